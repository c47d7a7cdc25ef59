//! Container ids: `<deployment>-<service>-<replica>-<random>`, valid for
//! libcontainer, cgroups and interface names alike.

pub fn short_random() -> String {
    zlayer_runtime::random_suffix()
}
