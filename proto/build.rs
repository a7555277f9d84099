//! Generates the gRPC code from `rkm/v1/*.proto` with the vendored `protoc`, so
//! nothing needs installing on the build machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "rkm/v1/system.proto",
        "rkm/v1/audit.proto",
        "rkm/v1/custodian.proto",
        "rkm/v1/key.proto",
        "rkm/v1/recovery.proto",
        "rkm/v1/access.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("rkm_descriptor.bin"))
        .compile_with_config(config, &protos, &["."])?;
    Ok(())
}
