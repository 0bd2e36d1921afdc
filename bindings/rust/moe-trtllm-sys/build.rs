//! Finds libmoe_trtllm: $MOE_TRTLLM_LIB_DIR, else the `pkg-config` CLI (moe_trtllm.pc).
//! Emits `cargo:lib_dir=` so dependents see DEP_MOE_TRTLLM_LIB_DIR (for their rpath).
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MOE_TRTLLM_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-changed=build.rs");

    let lib_dir = match env::var("MOE_TRTLLM_LIB_DIR") {
        Ok(d) if !d.is_empty() => d,
        _ => from_pkg_config().unwrap_or_else(|e| {
            panic!(
                "moe-trtllm-sys: cannot find libmoe_trtllm: set MOE_TRTLLM_LIB_DIR to the \
                 directory of libmoe_trtllm.so or make `pkg-config moe_trtllm` work \
                 (PKG_CONFIG_PATH): {e}"
            )
        }),
    };
    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=dylib=moe_trtllm");
    // This crate's own test binaries (the layout tests) find the library through this rpath.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    println!("cargo:lib_dir={lib_dir}");
}

fn from_pkg_config() -> Result<String, String> {
    let out = Command::new("pkg-config")
        .args(["--libs-only-L", "moe_trtllm"])
        .output()
        .map_err(|e| format!("running pkg-config: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|f| f.strip_prefix("-L").map(str::to_string))
        .ok_or_else(|| format!("pkg-config gave no -L flag: {text:?}"))
}
