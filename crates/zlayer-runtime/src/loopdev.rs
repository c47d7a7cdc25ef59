//! A filesystem image mounted through a loop device. The device is
//! configured with autoclear, so unmounting the filesystem releases it and
//! nothing is left to detach. Three ioctls, written here: the loop device
//! crates generate their bindings with bindgen, which needs libclang at
//! build time.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LOOP_MAJOR: u64 = 7;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>` (Linux 5.8 and later).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// Mounts the ext4 image at `image` on `target`, `nosuid,nodev`.
pub(crate) fn mount_image(image: &Path, target: &Path) -> std::io::Result<()> {
    let backing = OpenOptions::new().read(true).write(true).open(image)?;
    // Held open until the mount holds the device: autoclear detaches it at
    // the last close, which after a failed mount is this one.
    let (path, _device) = attach(&backing)?;
    let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
    nix::mount::mount(Some(&path), target, Some("ext4"), flags, None::<&str>)
        .map_err(std::io::Error::from)
}

/// A free loop device configured on `backing`, autoclear.
fn attach(backing: &std::fs::File) -> std::io::Result<(PathBuf, std::fs::File)> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let mut last = std::io::Error::other("no free loop device");
    // Another process may take the free device first: try again.
    for _ in 0..10 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns an index.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        if !path.exists() {
            // No udev (a container, a minimal host): make the node.
            let dev = nix::sys::stat::makedev(LOOP_MAJOR, n as u64);
            nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                dev,
            )
            .map_err(std::io::Error::from)?;
        }
        let device = OpenOptions::new().read(true).write(true).open(&path)?;
        let config = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: 0,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags: LO_FLAGS_AUTOCLEAR,
                file_name: [0; 64],
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which
        // `config` is laid out as (sizes asserted above).
        let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config) };
        if rc == 0 {
            return Ok((path, device));
        }
        last = std::io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EBUSY) {
            return Err(last);
        }
    }
    Err(last)
}
