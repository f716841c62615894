//! `portcullis package --out DIR`: the filter as an OCI image layout, ready
//! for `skopeo copy oci:DIR:TAG docker://REGISTRY/portcullis:TAG`, from
//! where Istio's WasmPlugin (`url: oci://...`) pulls it (`portcullis-oci`
//! builds it; docs/filter.md, "Shipping the module").

use crate::failure::Failure;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PackageArgs {
    /// Directory to write the OCI image layout to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// A proxy-wasm module to package instead of the embedded filter.
    #[arg(long)]
    filter: Option<PathBuf>,
    /// The image tag (`org.opencontainers.image.ref.name` in index.json).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
    /// RFC 3339 time for the manifest's `org.opencontainers.image.created`
    /// annotation; without it the image is the same bytes on every build.
    #[arg(long)]
    created: Option<String>,
}

pub fn run(args: PackageArgs) -> Result<(), Failure> {
    let module = match &args.filter {
        Some(path) => std::fs::read(path)
            .map_err(|e| Failure::Usage(format!("cannot read --filter {}: {e}", path.display())))?,
        None => crate::serve_cmd::DEFAULT_FILTER.to_vec(),
    };
    let image = oci::wasm_image(&module, &args.tag, args.created.as_deref())
        .map_err(|e| Failure::in_command("package", e))?;
    image
        .write_layout(&args.out)
        .map_err(|e| Failure::in_command("package", e))?;
    let dir = args.out.display();
    println!(
        "portcullis: wrote the OCI image layout {dir} (tag {})",
        image.tag
    );
    println!(
        "module sha256: {}",
        image.layer.digest.trim_start_matches("sha256:")
    );
    println!("manifest digest: {}", image.manifest.digest);
    println!(
        "push with: skopeo copy oci:{dir}:{tag} docker://REGISTRY/portcullis:{tag}",
        tag = image.tag
    );
    println!(
        "then pin it: WasmPlugin url: oci://REGISTRY/portcullis@{}",
        image.manifest.digest
    );
    Ok(())
}
