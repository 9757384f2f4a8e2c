//! Generates the gRPC code of `proto/rosetta.proto` with a vendored `protoc` (none need be installed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/rosetta.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/rosetta.proto");
    Ok(())
}
