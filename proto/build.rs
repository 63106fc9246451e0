//! Compiles `custos/v1/*.proto` with protox (pure Rust, no system `protoc`) and
//! generates the tonic client and server code, plus the encoded descriptor set
//! that the daemon serves through gRPC reflection.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "custos/v1/http.proto",
        "custos/v1/keys.proto",
        "custos/v1/signing.proto",
        "custos/v1/verify.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("custos_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
