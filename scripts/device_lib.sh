# Shared by the device-machine scripts (bench_gpu.sh, gpu_train_check.sh); source it.

# unxz SRC DST: xz if the machine has it, else Python's lzma (the device image may lack xz).
unxz() {
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}

# What a packed binary is built from (configs/dermamnist.toml and assets/fonts are compiled in).
BUILD_INPUTS=(crates Cargo.toml Cargo.lock configs assets)

# build_version: the last commit touching the build inputs, plus " (uncommitted changes)" when
# they differ from it, untracked files included (a docs-only commit does not make a pack stale).
build_version() {
  local dirty=''
  if ! git diff --quiet HEAD -- "${BUILD_INPUTS[@]}" || [ -n "$(git ls-files --others --exclude-standard -- "${BUILD_INPUTS[@]}")" ]; then
    dirty=' (uncommitted changes)'
  fi
  echo "$(git log -1 --format=%h -- "${BUILD_INPUTS[@]}")$dirty"
}

# build_stamp NAME: records in .dev/BUILD which build inputs the packed binary NAME was built
# from (one line per binary; carried with the binaries and printed on the device).
build_stamp() {
  local stamp; stamp="$1: $(build_version) built $(date -u +%FT%TZ)"
  { grep -v "^$1: " .dev/BUILD 2>/dev/null; echo "$stamp"; } >.dev/BUILD.tmp && mv .dev/BUILD.tmp .dev/BUILD
}

# check_packs NAME...: here, before a device call: each packed binary must be stamped with the
# current build inputs, committed (the device cannot rebuild; a stale pack wastes its budget).
check_packs() {
  local now bad=0 name line; now=$(build_version)
  for name in "$@"; do
    line=$(grep "^$name: " .dev/BUILD 2>/dev/null)
    if [ ! -f ".dev/$name.xz" ] || [ -z "$line" ]; then
      echo "missing: .dev/$name.xz or its .dev/BUILD line (run the prepare step)"; bad=1
    elif [ "${line#"$name: $now built "}" = "$line" ] || [ "${now% (uncommitted changes)}" != "$now" ]; then
      echo "stale: $line; the build inputs are now at $now (commit, then run the prepare step)"; bad=1
    else
      echo "ok: $line"
    fi
  done
  return $bad
}

# build_info: what .dev/BUILD says, beside the commit of the tree that travelled (if .git did).
build_info() {
  if [ -f .dev/BUILD ]; then sed 's/^/packed /' .dev/BUILD; else echo "packed binaries: no .dev/BUILD (carry it)"; fi
  git rev-parse --short HEAD 2>/dev/null | sed 's/^/tree /' || true
}

# vulkan_setup: the Vulkan loader carried in .gl/ (the device has the NVIDIA driver's ICD but
# maybe no loader), and VK_DRIVER_FILES when no NVIDIA ICD is where the loader looks: the
# driver's own JSON under /usr/local/nvidia (the device README's path first), else one written
# for the driver library the container mounts.
vulkan_setup() {
  for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig
  if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
    local icd
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/*.json \
      /usr/local/nvidia/etc/vulkan/icd.d/*.json; do
      [ -f "$icd" ] && { export VK_DRIVER_FILES=$icd; break; }
    done
    if [ -z "${VK_DRIVER_FILES:-}" ] && ldconfig -p | grep -q 'libGLX_nvidia\.so\.0'; then
      printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "libGLX_nvidia.so.0", "api_version": "1.3.0"}}\n' \
        >/tmp/nvidia_icd.json
      export VK_DRIVER_FILES=/tmp/nvidia_icd.json
    fi
  fi
  # Loader and driver errors in the logs: the WGSL build cannot pin Vulkan, and wgpu would fall
  # back to OpenGL ES without a word.
  export VK_LOADER_DEBUG=${VK_LOADER_DEBUG:-error,warn}
  # The driver's compiled shaders where tune_cache_save finds them (see below).
  mkdir -p target/nv-shader-cache
  export __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH=$PWD/target/nv-shader-cache
  export __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 __GL_SHADER_DISK_CACHE_SIZE=1073741824
  echo "vulkan: loader $(ldconfig -p | grep -c 'libvulkan\.so\.1') entries; ICD ${VK_DRIVER_FILES:-from the system icd.d}"
}

# Kernel tuning carried from one device session to the next. A fresh machine spends its first
# epoch compiling and autotuning kernels (157 s of epoch 1 at 64 px on 2026-11-27, against
# 11–20 s in later processes on the same machine), about a sixth of a 15-minute budget. Two
# caches hold that work: CubeCL's autotune database (a binary run from the repository root
# keeps it in target/environment: the outermost Cargo.toml's target/) and the NVIDIA driver's
# shader cache, which vulkan_setup points into target/nv-shader-cache. tune_cache_save packs
# both into a file under $OUT; copy it here to .dev/tune-cache.tar.xz and carry it: the next
# call's tune_cache_restore unpacks it before its runs. Entries for other shapes or another
# build are looked up by key and ignored. The diag plan's cold run removes target/environment
# first; the shader cache stays, so its cold/cached pair then measures autotuning alone.
TUNE_CACHE=.dev/tune-cache.tar.xz
tune_cache_restore() {
  if [ ! -f "$TUNE_CACHE" ]; then echo "tune cache: none carried ($TUNE_CACHE)"; return 0; fi
  mkdir -p target
  python3 - "$TUNE_CACHE" target <<'EOF' || echo "tune cache: $TUNE_CACHE could not be unpacked; runs tune afresh"
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as t:
    names = t.getnames()
    t.extractall(sys.argv[2], filter="data")
print(f"tune cache: {len(names)} entries from {sys.argv[1]} into {sys.argv[2]}/")
EOF
}

# tune_cache_save DEST: both caches into DEST (xz; the shader cache left out when the pair is
# over 6 MiB: the 64-px call carries ~59 MB of the 64 MiB without it).
tune_cache_save() {
  python3 - "$1" <<'EOF' || echo "tune cache: not saved"
import os, sys, tarfile
dest, limit = sys.argv[1], 6 << 20
def pack(names):
    names = [n for n in names if os.path.exists(os.path.join("target", n))]
    if not names:
        sys.exit("tune cache: nothing under target/ to save")
    with tarfile.open(dest + ".tmp", "w:xz", preset=6) as t:
        for n in names:
            t.add(os.path.join("target", n), arcname=n)
    return os.path.getsize(dest + ".tmp"), names
size, kept = pack(["environment", "nv-shader-cache"])
if size > limit:
    size, kept = pack(["environment"])
os.replace(dest + ".tmp", dest)
print(f"tune cache: {' + '.join(kept)} saved to {dest} ({size >> 10} KiB)")
EOF
}
