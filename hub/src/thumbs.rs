//! Previews of evidence photos for the review desk's lists and task pages.
//!
//! A preview is made once, when a photo arrives whole (and on first request for a
//! photo that arrived before previews existed), off the store thread and one at a
//! time in the whole process: a photo's decode is bounded in pixels and memory
//! (`fivestar_core::media`), and the district's photos queue behind each other
//! rather than multiplying that bound. A photo that cannot be decoded is recorded
//! as having no preview, so it is not tried again.

use fivestar_core::media;
use fivestar_store::StoreThread;
use tokio::sync::Semaphore;

use crate::store::HubStore;

/// One decode at a time in the whole hub.
static DECODES: Semaphore = Semaphore::const_new(1);

/// A photo's preview (JPEG): made now if it was not yet; `None` when the file is
/// not an image the hub decodes, is not whole at the hub, or could not be decoded.
pub async fn preview(
    store: &StoreThread<HubStore>,
    community: &str,
    sha256: &str,
) -> Result<Option<Vec<u8>>, String> {
    let (c, h) = (community.to_string(), sha256.to_string());
    let known = store
        .call(move |s| s.file_thumb(&c, &h))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if let Some(made) = known {
        return Ok(made);
    }
    make(store, community, sha256).await
}

/// Makes a photo's preview in the background, once it arrived whole.
pub fn spawn_make(store: StoreThread<HubStore>, community: String, sha256: String) {
    tokio::spawn(async move {
        if let Err(err) = make(&store, &community, &sha256).await {
            tracing::warn!(%community, %sha256, error = %err, "no preview of an evidence photo");
        }
    });
}

async fn make(
    store: &StoreThread<HubStore>,
    community: &str,
    sha256: &str,
) -> Result<Option<Vec<u8>>, String> {
    let _permit = DECODES.acquire().await.map_err(|e| e.to_string())?;
    /// What the store says about the photo.
    enum Found {
        /// A preview was recorded (made, or none possible) meanwhile.
        Known(Option<Vec<u8>>),
        /// A whole photo to decode: its type and bytes.
        Photo(String, Vec<u8>),
    }
    let (c, h) = (community.to_string(), sha256.to_string());
    let found = store
        .call(move |s| -> Result<Option<Found>, fivestar_store::StoreError> {
            if let Some(made) = s.file_thumb(&c, &h)? {
                return Ok(Some(Found::Known(made)));
            }
            let Some(file) = s.referenced_file(&c, &h)? else { return Ok(None) };
            if !media::decodable(&file.mime) {
                return Ok(None);
            }
            Ok(s.file_bytes_of(&c, &h)?.map(|bytes| Found::Photo(file.mime, bytes)))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (mime, bytes) = match found {
        None => return Ok(None),
        Some(Found::Known(made)) => return Ok(made),
        Some(Found::Photo(mime, bytes)) => (mime, bytes),
    };
    // A panic in a decoder ends this task, not the hub.
    let thumb = tokio::task::spawn_blocking(move || media::thumbnail(&bytes, &mime))
        .await
        .map_err(|e| format!("the decoder failed: {e}"))?;
    let thumb = match thumb {
        Ok(thumb) => Some(thumb),
        Err(err) => {
            tracing::info!(%community, %sha256, error = %err, "an evidence photo has no preview");
            None
        }
    };
    let (c, h, kept) = (community.to_string(), sha256.to_string(), thumb.clone());
    store
        .call(move |s| s.save_file_thumb(&c, &h, kept.as_deref()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(thumb)
}
