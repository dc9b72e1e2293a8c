//! Evidence photos: small previews for lists, and photos made smaller before they
//! travel. Pure: bytes in, bytes out, every cost bounded before it is paid (a file
//! from the network names its own size, and a small file can claim a huge picture).
//!
//! JPEG and PNG are decoded; HEIC is not (no maintained pure-Rust decoder), so a
//! HEIC photo has no preview and travels as it is.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The longest side of a preview, in pixels.
pub const THUMB_SIDE: u32 = 320;

/// The most pixels a photo may have to be decoded (60 MP: a 48 MP phone photo fits).
pub const MAX_PIXELS: u64 = 60_000_000;

/// The most memory one decode may take.
const MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// Why a photo could not be previewed or made smaller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// Not a type this module decodes (HEIC, PDF, office documents).
    #[error("{0} is not a picture that can be decoded here")]
    NotDecodable(String),
    /// The picture claims more pixels than [`MAX_PIXELS`].
    #[error("the picture is {width}×{height} pixels, more than {MAX_PIXELS} in all")]
    TooLarge {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// The bytes are not a picture of the type they claim.
    #[error("the picture cannot be read: {0}")]
    Damaged(String),
}

/// Whether `mime` is a type [`thumbnail`] and [`shrink`] decode.
pub fn decodable(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/png")
}

/// A decoded picture, turned upright as its camera recorded (EXIF orientation).
fn decode(bytes: &[u8], mime: &str) -> Result<DynamicImage, MediaError> {
    let format = match mime {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        other => return Err(MediaError::NotDecodable(other.to_string())),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(20_000);
    limits.max_image_height = Some(20_000);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(damaged)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(MediaError::TooLarge { width, height });
    }
    let orientation = decoder.orientation().map_err(damaged)?;
    let mut picture = DynamicImage::from_decoder(decoder).map_err(damaged)?;
    picture.apply_orientation(orientation);
    Ok(picture)
}

fn damaged(err: image::ImageError) -> MediaError {
    match err {
        image::ImageError::Limits(_) => MediaError::TooLarge { width: 0, height: 0 },
        other => MediaError::Damaged(other.to_string()),
    }
}

/// JPEG bytes of a picture at quality `quality`, on white where it was transparent.
fn jpeg(picture: &DynamicImage, quality: u8) -> Result<Vec<u8>, MediaError> {
    let rgb = if picture.color().has_alpha() {
        let rgba = picture.to_rgba8();
        let mut flat = image::RgbImage::new(rgba.width(), rgba.height());
        for (out, px) in flat.pixels_mut().zip(rgba.pixels()) {
            let a = u16::from(px[3]);
            for c in 0..3 {
                // Over white: c·a + 255·(1 − a), in integers.
                out[c] = ((u16::from(px[c]) * a + 255 * (255 - a)) / 255) as u8;
            }
        }
        flat
    } else {
        picture.to_rgb8()
    };
    let mut out = Vec::new();
    rgb.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality))
        .map_err(|e| MediaError::Damaged(e.to_string()))?;
    Ok(out)
}

/// A JPEG preview of a photo, its longest side at most [`THUMB_SIDE`] pixels.
pub fn thumbnail(bytes: &[u8], mime: &str) -> Result<Vec<u8>, MediaError> {
    let picture = decode(bytes, mime)?;
    let small = if picture.width().max(picture.height()) > THUMB_SIDE {
        picture.thumbnail(THUMB_SIDE, THUMB_SIDE)
    } else {
        picture
    };
    jpeg(&small, 80)
}

/// A photo made smaller before it travels: when its longest side is over `max_side`
/// pixels, the picture at that size (upright, JPEG at quality 85 for a JPEG, PNG for
/// a PNG); `None` when it is already small enough, or re-encoding would not make it
/// smaller, so the original is kept. The metadata of the original (EXIF) is not kept.
pub fn shrink(bytes: &[u8], mime: &str, max_side: u32) -> Result<Option<Vec<u8>>, MediaError> {
    if max_side == 0 || !decodable(mime) {
        return Ok(None);
    }
    let picture = decode(bytes, mime)?;
    if picture.width().max(picture.height()) <= max_side {
        return Ok(None);
    }
    let smaller = picture.resize(max_side, max_side, image::imageops::FilterType::Lanczos3);
    let out = if mime == "image/png" {
        let mut out = Vec::new();
        smaller
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|e| MediaError::Damaged(e.to_string()))?;
        out
    } else {
        jpeg(&smaller, 85)?
    };
    Ok((out.len() < bytes.len()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        // A gradient, so that sizes and encodings behave as for a real photo.
        let picture = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, ((x ^ y) & 0xff) as u8])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(picture).write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    fn size_of(bytes: &[u8]) -> (u32, u32) {
        let picture = image::load_from_memory(bytes).unwrap();
        (picture.width(), picture.height())
    }

    #[test]
    fn previews_keep_the_shape_within_the_preview_size() {
        let thumb = thumbnail(&photo(1600, 1200, ImageFormat::Jpeg), "image/jpeg").unwrap();
        assert_eq!(size_of(&thumb), (320, 240));
        assert_eq!(&thumb[..3], &[0xff, 0xd8, 0xff], "a JPEG");
        let thumb = thumbnail(&photo(300, 900, ImageFormat::Png), "image/png").unwrap();
        assert_eq!(size_of(&thumb), (107, 320));
        let small = thumbnail(&photo(100, 50, ImageFormat::Png), "image/png").unwrap();
        assert_eq!(size_of(&small), (100, 50), "a small picture is not enlarged");
    }

    #[test]
    fn photos_over_the_size_are_made_smaller_and_others_kept() {
        let big = photo(3000, 2000, ImageFormat::Jpeg);
        let smaller = shrink(&big, "image/jpeg", 1500).unwrap().expect("made smaller");
        assert_eq!(size_of(&smaller), (1500, 1000));
        assert!(smaller.len() < big.len());
        assert_eq!(shrink(&big, "image/jpeg", 3000).unwrap(), None, "already small enough");
        assert_eq!(shrink(&big, "image/jpeg", 0).unwrap(), None, "0 keeps originals");
        assert_eq!(shrink(b"%PDF-1.7", "application/pdf", 100).unwrap(), None);
        let png = shrink(&photo(2000, 1000, ImageFormat::Png), "image/png", 500).unwrap();
        let png = png.expect("made smaller");
        assert_eq!(&png[..4], b"\x89PNG", "a PNG stays a PNG");
        assert_eq!(size_of(&png), (500, 250));
    }

    #[test]
    fn damaged_and_undecodable_files_are_named_as_such() {
        let mut cut = photo(800, 600, ImageFormat::Png);
        cut.truncate(cut.len() / 3);
        assert!(matches!(thumbnail(&cut, "image/png"), Err(MediaError::Damaged(_))));
        assert!(matches!(thumbnail(b"not a jpeg", "image/jpeg"), Err(MediaError::Damaged(_))));
        assert_eq!(
            thumbnail(b"....ftypheic", "image/heic"),
            Err(MediaError::NotDecodable("image/heic".into()))
        );
    }

    #[test]
    fn a_small_file_claiming_a_huge_picture_is_refused_before_decoding() {
        // A valid PNG header claiming 20000 × 20000 pixels, with no picture data.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(20_000u32.to_be_bytes());
        ihdr.extend(20_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        png.extend(13u32.to_be_bytes());
        png.extend(&ihdr);
        png.extend(crc32(&ihdr).to_be_bytes());
        for name in [b"IDAT", b"IEND"] {
            png.extend(0u32.to_be_bytes());
            png.extend(name);
            png.extend(crc32(name).to_be_bytes());
        }
        let got = thumbnail(&png, "image/png");
        assert!(matches!(got, Err(MediaError::TooLarge { .. })), "{got:?}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn transparent_pixels_turn_white_in_previews() {
        let clear = image::RgbaImage::from_pixel(10, 10, image::Rgba([0, 0, 0, 0]));
        let mut png = Vec::new();
        DynamicImage::ImageRgba8(clear)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let thumb = image::load_from_memory(&thumbnail(&png, "image/png").unwrap()).unwrap();
        let px = thumb.to_rgb8().get_pixel(5, 5).0;
        assert!(px.iter().all(|&c| c > 245), "white, not black: {px:?}");
    }
}
