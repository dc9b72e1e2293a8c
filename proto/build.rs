//! Compiles the `.proto` files with protox (pure Rust, so a fresh machine needs no
//! `protoc`), exports the file descriptor set for gRPC reflection, and generates the
//! tonic client and server code.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &["fivestar/v1/sync.proto", "fivestar/v1/query.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("fivestar_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
