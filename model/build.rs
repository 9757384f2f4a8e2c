//! Records libtorch's directory (from torch-sys) as the run path of this crate's tests and
//! examples, so they start without `LD_LIBRARY_PATH`. `LD_LIBRARY_PATH` still overrides it.

fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
