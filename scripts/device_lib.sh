# Shared by the device-machine scripts (bench_gpu.sh, gpu_train_check.sh); source it.

# unxz SRC DST: xz if the machine has it, else Python's lzma (the device image may lack xz).
unxz() {
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}

# vulkan_setup: the Vulkan loader carried in .gl/ (the device has the NVIDIA driver's ICD but
# maybe no loader), and VK_DRIVER_FILES when that ICD is only under /usr/local/nvidia.
vulkan_setup() {
  for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig
  if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1 \
    && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
}
