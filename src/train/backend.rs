//! Run-time choice of burn backend: wgpu (Vulkan/Metal/DX12, lavapipe on CPU-only machines),
//! flex (pure-Rust CPU) or ndarray (deprecated CPU backend, kept as a cross-check).

use super::TrainError;
use burn::tensor::Device;

/// Which burn backend trains the SAEs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// burn-wgpu: the GPU (or lavapipe) through Vulkan/Metal/DX12.
    Wgpu,
    /// burn-flex: pure-Rust CPU backend.
    Flex,
    /// burn-ndarray: the older CPU backend (deprecated upstream in favour of flex).
    Ndarray,
}

impl BackendKind {
    /// The lower-case name used on the command line and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wgpu => "wgpu",
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
        }
    }

    /// The plain (non-autodiff) device of this backend.
    ///
    /// For wgpu this checks that an adapter exists first, so a machine without Vulkan gets a
    /// clear error instead of a panic deep inside the runtime.
    pub fn device(self) -> Result<Device, TrainError> {
        match self {
            Self::Flex => Ok(Device::flex()),
            #[allow(deprecated)] // ndarray is kept on purpose as an independent CPU reference
            Self::Ndarray => Ok(Device::ndarray()),
            Self::Wgpu => wgpu_device(),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, TrainError> {
    use burn::tensor::{DeviceKind, DeviceType};
    let found = Device::enumerate(DeviceType::Wgpu).into_vec();
    if found.is_empty() {
        return Err(TrainError::Backend(
            "wgpu found no adapter (no Vulkan/Metal/DX12 driver; on Linux install \
             mesa-vulkan-drivers for lavapipe, or use --backend flex)"
                .into(),
        ));
    }
    Ok(Device::wgpu(DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, TrainError> {
    Err(TrainError::Backend(
        "this build has no wgpu backend (rebuild with the `wgpu` feature) ; use --backend flex"
            .into(),
    ))
}
