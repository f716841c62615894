//! The filter as an OCI image, the way Istio and Envoy users ship wasm.
//!
//! Istio's `WasmPlugin` (`url: oci://...`) and Envoy's remote code source
//! through an image-pulling agent accept an OCI image whose single layer is
//! the module itself, with the wasm media types of the "compat" image
//! variant Istio's image fetcher recognises (pkg/wasm/imagefetcher.go):
//!
//! * layer: `application/vnd.module.wasm.content.layer.v1+wasm`, the
//!   module's bytes unchanged, so the layer digest *is* the module's
//!   sha256;
//! * config: `application/vnd.module.wasm.config.v1+json`;
//! * manifest: a plain OCI image manifest.
//!
//! [`wasm_image`] builds the blobs; [`Image::write_layout`] writes them as an
//! OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`),
//! which `skopeo copy oci:DIR:TAG docker://REGISTRY/NAME:TAG` pushes to any
//! registry. The types and their JSON come from `oci-spec`, so the manifest
//! is what the specification says, not a hand-written approximation; the
//! bytes are deterministic for a given module, tag and creation time, so a
//! rebuild gives the same digests.

use oci_spec::image::{
    ANNOTATION_CREATED, ANNOTATION_REF_NAME, Descriptor, DescriptorBuilder, Digest,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, SCHEMA_VERSION,
    Sha256Digest,
};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

/// The layer media type of a wasm module (Istio's compat variant).
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The config media type that goes with it.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";

/// Why an image could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("the module is not WebAssembly (it does not start with \\0asm)")]
    NotWasm,
    #[error("the tag {0:?} is not a valid OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")]
    BadTag(String),
    #[error("building the OCI document failed: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("serialising the OCI document failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One blob: its digest (`sha256:<hex>`) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            bytes,
        }
    }

    fn descriptor(&self, media_type: MediaType) -> Result<Descriptor, OciError> {
        let hex = self.digest.trim_start_matches("sha256:");
        let digest: Digest = Sha256Digest::from_str(hex)?.into();
        Ok(DescriptorBuilder::default()
            .media_type(media_type)
            .digest(digest)
            .size(self.bytes.len() as u64)
            .build()?)
    }
}

/// A wasm module as an OCI image: the layer, the config and the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub tag: String,
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

/// Builds the image for `module` under `tag`; `created` (RFC 3339) goes in
/// the manifest's `org.opencontainers.image.created` annotation when given.
pub fn wasm_image(module: &[u8], tag: &str, created: Option<&str>) -> Result<Image, OciError> {
    if !module.starts_with(b"\0asm") {
        return Err(OciError::NotWasm);
    }
    if !valid_tag(tag) {
        return Err(OciError::BadTag(tag.to_owned()));
    }
    let layer = Blob::new(module.to_vec());
    // Istio reads nothing from the config; an empty object is what the
    // compat variant's producers write.
    let config = Blob::new(b"{}".to_vec());
    let mut builder = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor(MediaType::Other(WASM_CONFIG_MEDIA_TYPE.into()))?)
        .layers(vec![
            layer.descriptor(MediaType::Other(WASM_LAYER_MEDIA_TYPE.into()))?,
        ]);
    if let Some(created) = created {
        builder = builder.annotations(HashMap::from([(
            ANNOTATION_CREATED.to_owned(),
            created.to_owned(),
        )]));
    }
    let manifest = Blob::new(builder.build()?.to_string()?.into_bytes());
    Ok(Image {
        tag: tag.to_owned(),
        layer,
        config,
        manifest,
    })
}

/// The OCI distribution spec's tag grammar.
fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Image {
    /// Writes the image as an OCI image layout under `dir` (created if
    /// missing): `oci-layout`, `index.json` naming the manifest with the
    /// tag as `org.opencontainers.image.ref.name`, and the three blobs.
    pub fn write_layout(&self, dir: &Path) -> Result<(), OciError> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(|source| OciError::Write {
            path: blobs.display().to_string(),
            source,
        })?;
        for blob in [&self.layer, &self.config, &self.manifest] {
            let name = blob.digest.trim_start_matches("sha256:");
            write(&blobs.join(name), &blob.bytes)?;
        }
        let layout = OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()?;
        write(
            &dir.join("oci-layout"),
            serde_json::to_string(&layout)?.as_bytes(),
        )?;
        let mut manifest = self.manifest.descriptor(MediaType::ImageManifest)?;
        manifest.set_annotations(Some(HashMap::from([(
            ANNOTATION_REF_NAME.to_owned(),
            self.tag.clone(),
        )])));
        let index = ImageIndexBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest])
            .build()?;
        write(&dir.join("index.json"), index.to_string()?.as_bytes())
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    std::fs::write(path, bytes).map_err(|source| OciError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn the_layer_is_the_module_and_its_digest_the_modules_sha256() {
        let image = wasm_image(MODULE, "v1", None).unwrap();
        assert_eq!(image.layer.bytes, MODULE);
        assert_eq!(
            image.layer.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(MODULE)))
        );
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(manifest["layers"][0]["mediaType"], WASM_LAYER_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["digest"], image.layer.digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], MODULE.len());
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
    }

    #[test]
    fn the_same_inputs_give_the_same_digests() {
        let a = wasm_image(MODULE, "v1", Some("2026-12-07T00:00:00Z")).unwrap();
        let b = wasm_image(MODULE, "v1", Some("2026-12-07T00:00:00Z")).unwrap();
        assert_eq!(a, b);
        let c = wasm_image(MODULE, "v1", Some("2026-12-08T00:00:00Z")).unwrap();
        assert_ne!(a.manifest.digest, c.manifest.digest);
        assert_eq!(a.layer.digest, c.layer.digest);
    }

    #[test]
    fn not_wasm_and_bad_tags_are_refused() {
        assert!(matches!(
            wasm_image(b"hello", "v1", None),
            Err(OciError::NotWasm)
        ));
        for tag in ["", ".x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(
                matches!(wasm_image(MODULE, tag, None), Err(OciError::BadTag(_))),
                "{tag:?}"
            );
        }
    }
}
