//! The build loop: resolve `FROM`, apply each step to the image state, take
//! a layer from the cache or make it, and commit the result.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use zlayer_image::{ImageStore, StoredLayer};

use crate::cache::{chain, Cache, CachedLayer};
use crate::config::{Empty, History, ImageConfigFile, RunConfig};
use crate::context::Context;
use crate::dockerfile::{self, CommandForm, Op, Step};
use crate::error::{BuildError, IoAt};
use crate::layer::LayerArchive;
use crate::words::{self, Vars};

/// Where `RUN` commands get their network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace, as `docker build --network host`.
    #[default]
    Host,
    /// A namespace holding only loopback.
    None,
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The Dockerfile; `-` reads it from stdin.
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub tags: Vec<String>,
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    pub network: Network,
    /// `RUN` output goes to a log, shown only when the command fails.
    pub quiet: bool,
}

#[derive(Debug)]
pub struct Built {
    pub digest: String,
    pub tags: Vec<String>,
    pub steps: usize,
    pub cached: usize,
}

/// Build args Docker accepts without an `ARG` line.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image as built so far.
pub(crate) struct ImageState {
    pub layers: Vec<StoredLayer>,
    pub config: ImageConfigFile,
    /// `ARG`s declared in this stage and their values (None: declared, unset).
    pub args: BTreeMap<String, Option<String>>,
    pub shell: Vec<String>,
    /// Whether CMD was set by this Dockerfile (ENTRYPOINT resets an inherited one).
    pub cmd_set_here: bool,
    pub key: String,
    pub created: String,
}

impl ImageState {
    pub fn run_config(&mut self) -> &mut RunConfig {
        &mut self.config.config
    }

    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        self.layers.iter().map(|l| l.dir.clone()).collect()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .config
            .env
            .iter()
            .flatten()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Variables visible to expansion: the stage's ARGs, then ENV over them.
    pub fn vars(&self) -> Vars {
        let mut v: Vars = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        v.extend(self.env());
        v
    }

    /// The environment a `RUN` sees: ENV, plus ARGs that ENV does not set.
    pub fn run_env(&self) -> Vec<String> {
        let mut env = self.env();
        for (k, v) in &self.args {
            if let Some(v) = v {
                if !env.iter().any(|(ek, _)| ek == k) {
                    env.push((k.clone(), v.clone()));
                }
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    pub fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    pub fn user(&self) -> String {
        self.config.config.user.clone().unwrap_or_default()
    }

    fn set_env(&mut self, key: String, value: String) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let prefix = format!("{key}=");
        env.retain(|kv| !kv.starts_with(&prefix));
        env.push(format!("{key}={value}"));
    }
}

/// What a step produced, for output and for the cache chain.
pub(crate) enum Outcome {
    /// Only the config changed.
    Config,
    Layer {
        digest: String,
        size: u64,
        cached: bool,
    },
}

/// A layer-making step's work, run on a cache miss.
pub(crate) type MakeLayer<'a> =
    Box<dyn FnOnce(&ImageState, &Builder) -> Result<LayerArchive, BuildError> + 'a>;

pub struct Builder {
    pub(crate) data_dir: PathBuf,
    pub(crate) store: ImageStore,
    pub(crate) cache: Cache,
    pub(crate) context: Context,
    pub(crate) options: BuildOptions,
    pub(crate) file: String,
}

pub fn build(
    data_dir: &Path,
    options: BuildOptions,
    out: &mut dyn Write,
) -> Result<Built, BuildError> {
    // The runtime wants absolute paths for the rootfs and bundle.
    let data_dir = &std::path::absolute(data_dir).at(data_dir)?;
    let store = ImageStore::open(data_dir.join("images"))?;
    let cache = Cache::open(store.root()).at(store.root().join("build-cache"))?;
    let context = Context::open(&options.context)?;
    let (file, text) = read_dockerfile(&options)?;
    let parsed = dockerfile::parse(&file, &text)?;
    let builder = Builder {
        data_dir: data_dir.to_path_buf(),
        store,
        cache,
        context,
        options,
        file,
    };
    let _pin = builder.store.pin()?;
    crate::run::remove_stale_snapshots(&builder.store, &builder.data_dir);
    builder.run(parsed, out)
}

fn read_dockerfile(options: &BuildOptions) -> Result<(String, String), BuildError> {
    if options.dockerfile.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).at("<stdin>")?;
        return Ok(("<stdin>".into(), text));
    }
    let path = if options.dockerfile.as_os_str().is_empty() {
        options.context.join("Dockerfile")
    } else {
        options.dockerfile.clone()
    };
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BuildError::NoDockerfile(path.clone()),
        _ => BuildError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    Ok((path.display().to_string(), text))
}

impl Builder {
    pub(crate) fn step_error(&self, step: &Step, msg: impl std::fmt::Display) -> BuildError {
        BuildError::at(&self.file, step.line, step.col, msg.to_string())
    }

    fn run(&self, parsed: dockerfile::Parsed, out: &mut dyn Write) -> Result<Built, BuildError> {
        let total = parsed.steps.len() + 1;
        let mut unused: BTreeSet<String> = self.options.build_args.keys().cloned().collect();
        let mut globals: BTreeMap<String, Option<String>> = BTreeMap::new();
        for step in &parsed.global_args {
            let Op::Arg(raw) = &step.op else { continue };
            let vars = globals
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect();
            let (name, value) = self.declare_arg(step, raw, &vars, None, &mut unused)?;
            globals.insert(name, value);
        }
        let from_vars: Vars = globals
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let Op::From(image) = &parsed.from.op else {
            unreachable!("parse puts FROM here")
        };
        let image =
            words::expand(image, &from_vars).map_err(|e| self.step_error(&parsed.from, e))?;
        say(out, format_args!("STEP 1/{total}: {}", parsed.from.text));
        let mut state = self
            .base(&image)
            .map_err(|e| self.step_error(&parsed.from, e))?;
        for name in PREDEFINED_ARGS {
            if let Some(v) = self.options.build_args.get(*name) {
                state.args.insert(name.to_string(), Some(v.clone()));
                unused.remove(*name);
            }
        }
        let mut cached = 0;
        for (i, step) in parsed.steps.iter().enumerate() {
            say(out, format_args!("STEP {}/{total}: {}", i + 2, step.text));
            match self.apply(&mut state, step, &globals, &mut unused)? {
                Outcome::Config => {}
                Outcome::Layer {
                    digest,
                    size,
                    cached: hit,
                } => {
                    cached += usize::from(hit);
                    let what = if hit { "cached" } else { "new layer" };
                    say(
                        out,
                        format_args!("--> {what} {} ({})", short(&digest), human(size)),
                    );
                }
            }
        }
        for name in &unused {
            say(
                out,
                format_args!("warning: build arg `{name}` was not used by any ARG"),
            );
        }
        let digest = self.commit(state)?;
        say(out, format_args!("--> {digest}"));
        for t in &self.options.tags {
            say(
                out,
                format_args!("tagged {}", zlayer_image::normalize_name(t)),
            );
        }
        Ok(Built {
            digest,
            tags: self
                .options
                .tags
                .iter()
                .map(|t| zlayer_image::normalize_name(t))
                .collect(),
            steps: total,
            cached,
        })
    }

    /// `ARG NAME[=default]`: the build arg wins over the default, then the
    /// value of a global ARG of the same name.
    fn declare_arg(
        &self,
        step: &Step,
        raw: &str,
        vars: &Vars,
        global: Option<&BTreeMap<String, Option<String>>>,
        unused: &mut BTreeSet<String>,
    ) -> Result<(String, Option<String>), BuildError> {
        let (name, default) = match raw.split_once('=') {
            Some((n, d)) => (
                n.trim().to_string(),
                Some(words::expand(d, vars).map_err(|e| self.step_error(step, e))?),
            ),
            None => (raw.trim().to_string(), None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.step_error(step, format!("`{name}` is not a valid ARG name")));
        }
        unused.remove(&name);
        let value = self
            .options
            .build_args
            .get(&name)
            .cloned()
            .or(default)
            .or_else(|| global.and_then(|g| g.get(&name).cloned().flatten()));
        Ok((name, value))
    }

    fn base(&self, image: &str) -> Result<ImageState, BuildError> {
        let now = crate::clock::now();
        if image == "scratch" {
            let (os, arch) = zlayer_image::host_platform()
                .split_once('/')
                .map(|(o, a)| (o.to_string(), a.to_string()))
                .unwrap_or_default();
            return Ok(ImageState {
                layers: Vec::new(),
                config: ImageConfigFile {
                    architecture: arch,
                    os,
                    ..Default::default()
                },
                args: BTreeMap::new(),
                shell: vec!["/bin/sh".into(), "-c".into()],
                cmd_set_here: false,
                key: chain("", "FROM scratch"),
                created: crate::clock::source_date_epoch()
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
            });
        }
        let (name, digest) = self.store.lookup(image)?;
        let resolved = self.store.resolve(&name)?;
        let manifest = self.store.manifest(&digest)?;
        let config_bytes = self.store.read_blob(manifest.config().digest().as_ref())?;
        let config: ImageConfigFile = serde_json::from_slice(&config_bytes).map_err(|e| {
            BuildError::at(
                &self.file,
                1,
                1,
                format!("the config of `{name}` is not readable: {e}"),
            )
        })?;
        let layers = manifest
            .layers()
            .iter()
            .zip(config.rootfs.diff_ids.iter())
            .zip(resolved.layer_dirs)
            .map(|((d, diff_id), dir)| StoredLayer {
                descriptor: oci_media_type(d),
                diff_id: diff_id.clone(),
                dir,
            })
            .collect();
        let created = config.created.clone().unwrap_or(now);
        Ok(ImageState {
            layers,
            config,
            args: BTreeMap::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set_here: false,
            key: chain("", &format!("FROM {digest}")),
            created,
        })
    }

    fn apply(
        &self,
        state: &mut ImageState,
        step: &Step,
        globals: &BTreeMap<String, Option<String>>,
        unused: &mut BTreeSet<String>,
    ) -> Result<Outcome, BuildError> {
        let vars = state.vars();
        let expand = |s: &str| words::expand(s, &vars).map_err(|e| self.step_error(step, e));
        let pairs = |s: &str| words::key_values(s, &vars).map_err(|e| self.step_error(step, e));
        let summary: String;
        match &step.op {
            Op::From(_) => unreachable!("parse refuses a second FROM"),
            Op::Arg(raw) => {
                let (name, value) = self.declare_arg(step, raw, &vars, Some(globals), unused)?;
                summary = format!("ARG {name}={}", value.clone().unwrap_or_default());
                state.args.insert(name, value);
            }
            Op::Env(raw) => {
                let kv = pairs(raw)?;
                summary = format!("ENV {kv:?}");
                for (k, v) in kv {
                    if k.is_empty() {
                        return Err(self.step_error(step, "ENV needs NAME=VALUE"));
                    }
                    state.set_env(k, v);
                }
            }
            Op::Label(raw) => {
                let kv = pairs(raw)?;
                summary = format!("LABEL {kv:?}");
                state
                    .run_config()
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .extend(kv);
            }
            Op::Maintainer(name) => {
                summary = format!("MAINTAINER {name}");
                state
                    .run_config()
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert("maintainer".into(), name.clone());
            }
            Op::User(raw) => {
                let user = expand(raw)?;
                summary = format!("USER {user}");
                state.run_config().user = Some(user);
            }
            Op::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    list.push(port_spec(&expand(p)?).map_err(|e| self.step_error(step, e))?);
                }
                summary = format!("EXPOSE {list:?}");
                let exposed = state
                    .run_config()
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                exposed.extend(list.into_iter().map(|p| (p, Empty {})));
            }
            Op::StopSignal(raw) => {
                let sig = expand(raw)?;
                let valid = sig.parse::<u8>().is_ok()
                    || zlayer_runtime::signal_number(&sig).is_some()
                    || zlayer_runtime::signal_number(&format!("SIG{sig}")).is_some();
                if !valid {
                    return Err(self.step_error(
                        step,
                        format!("`{sig}` is not a signal (e.g. SIGTERM, SIGINT or 15)"),
                    ));
                }
                summary = format!("STOPSIGNAL {sig}");
                state.run_config().stop_signal = Some(sig);
            }
            Op::Volume(paths) => {
                let mut list = Vec::new();
                for p in paths {
                    list.push(expand(p)?);
                }
                summary = format!("VOLUME {list:?}");
                let v = state.run_config().volumes.get_or_insert_with(BTreeMap::new);
                v.extend(list.into_iter().map(|p| (p, Empty {})));
            }
            Op::Shell(argv) => {
                if argv.is_empty() {
                    return Err(self.step_error(
                        step,
                        "SHELL needs the exec form, e.g. SHELL [\"/bin/bash\", \"-c\"]",
                    ));
                }
                summary = format!("SHELL {argv:?}");
                state.shell = argv.clone();
            }
            Op::Cmd(c) => {
                let argv = self.argv(state, c);
                summary = format!("CMD {argv:?}");
                state.run_config().cmd = Some(argv);
                state.cmd_set_here = true;
            }
            Op::Entrypoint(c) => {
                let argv = self.argv(state, c);
                summary = format!("ENTRYPOINT {argv:?}");
                state.run_config().entrypoint = Some(argv);
                if !state.cmd_set_here {
                    state.run_config().cmd = None;
                }
            }
            Op::Workdir(raw) => {
                let dir = absolute(&state.workdir(), &expand(raw)?);
                state.run_config().working_dir = Some(dir.clone());
                return crate::copy::workdir(self, state, step, &dir);
            }
            Op::Run(c) => {
                let argv = self.argv(state, c);
                return crate::run::run(self, state, step, argv);
            }
            Op::Copy(op) => return crate::copy::copy(self, state, step, op, &vars),
        }
        Ok(self.config_step(state, step, &summary))
    }

    /// Records a step that changed only the config.
    pub(crate) fn config_step(
        &self,
        state: &mut ImageState,
        step: &Step,
        summary: &str,
    ) -> Outcome {
        state.key = chain(&state.key, summary);
        state.config.history.push(History {
            created: Some(state.created.clone()),
            created_by: Some(step.text.clone()),
            comment: Some("zlayer build".into()),
            empty_layer: true,
        });
        Outcome::Config
    }

    /// A command in its exec form: shell form runs under the current SHELL.
    pub(crate) fn argv(&self, state: &ImageState, c: &CommandForm) -> Vec<String> {
        match c {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => state.shell.iter().cloned().chain([s.clone()]).collect(),
        }
    }

    /// Looks `key` up in the cache (unless `--no-cache`); on a miss runs
    /// `make`, stores the layer and records it. Then adds the layer to `state`.
    pub(crate) fn layer_step(
        &self,
        state: &mut ImageState,
        step: &Step,
        what: &str,
        make: MakeLayer<'_>,
    ) -> Result<Outcome, BuildError> {
        let key = chain(&state.key, what);
        let hit = (!self.options.no_cache)
            .then(|| self.cache.get(&key))
            .flatten()
            .and_then(|c| self.cached_layer(&c).map(|l| (l, c.created)));
        let (layer, created, cached) = match hit {
            Some((layer, created)) => (layer, created, true),
            None => {
                let archive = make(state, self)?;
                let layer = self.store.commit_layer(
                    &archive.path,
                    MediaType::ImageLayerGzip,
                    &archive.blob_digest,
                    archive.size,
                    &archive.diff_id,
                )?;
                let created = crate::clock::source_date_epoch().unwrap_or_else(crate::clock::now);
                let entry = CachedLayer {
                    media_type: MediaType::ImageLayerGzip.to_string(),
                    digest: archive.blob_digest.clone(),
                    size: archive.size,
                    diff_id: archive.diff_id.clone(),
                    created: created.clone(),
                };
                self.cache
                    .put(&key, &entry)
                    .at(self.store.root().join("build-cache"))?;
                (layer, created, false)
            }
        };
        state.key = key;
        state.created = created.clone();
        state.config.rootfs.diff_ids.push(layer.diff_id.clone());
        state.config.history.push(History {
            created: Some(created),
            created_by: Some(step.text.clone()),
            comment: Some("zlayer build".into()),
            empty_layer: false,
        });
        let (digest, size) = (
            layer.descriptor.digest().to_string(),
            layer.descriptor.size(),
        );
        state.layers.push(layer);
        Ok(Outcome::Layer {
            digest,
            size,
            cached,
        })
    }

    fn cached_layer(&self, c: &CachedLayer) -> Option<StoredLayer> {
        let d = zlayer_image::layer_descriptor(&c.media_type, &c.digest, c.size).ok()?;
        self.store.stored_layer(&d, &c.diff_id)
    }

    fn commit(&self, mut state: ImageState) -> Result<String, BuildError> {
        state.config.created = Some(state.created.clone());
        state.config.rootfs.diff_ids = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        let bytes = serde_json::to_vec(&state.config)
            .map_err(|e| BuildError::at(&self.file, 1, 1, format!("image config: {e}")))?;
        let layers: Vec<Descriptor> = state.layers.iter().map(|l| l.descriptor.clone()).collect();
        Ok(self
            .store
            .commit_image(&bytes, &layers, &self.options.tags)?)
    }
}

/// Base layers keep their bytes; Docker's media type names become OCI's.
fn oci_media_type(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    let mt = match d.media_type().to_string().as_str() {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
        _ => d.media_type().clone(),
    };
    d.set_media_type(mt);
    d
}

/// `80`, `80/tcp`, `53/udp`, `8000-8010/tcp`.
fn port_spec(p: &str) -> Result<String, String> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "EXPOSE `{p}`: the protocol must be tcp, udp or sctp"
        ));
    }
    let valid = |n: &str| n.parse::<u16>().is_ok_and(|n| n > 0);
    let ok = match ports.split_once('-') {
        Some((a, b)) => valid(a) && valid(b),
        None => valid(ports),
    };
    if !ok {
        return Err(format!(
            "EXPOSE `{p}`: not a port number (1-65535) or range"
        ));
    }
    Ok(format!("{ports}/{proto}"))
}

/// `dir` made absolute against `cwd`, cleaned.
pub(crate) fn absolute(cwd: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{cwd}/{dir}")
    };
    format!("/{}", crate::ignore::clean(&joined))
}

fn say(out: &mut dyn Write, line: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match b {
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_paths() {
        assert_eq!(port_spec("80").unwrap(), "80/tcp");
        assert_eq!(port_spec("53/UDP").unwrap(), "53/udp");
        assert_eq!(port_spec("8000-8010").unwrap(), "8000-8010/tcp");
        assert!(port_spec("0").is_err());
        assert!(port_spec("http").is_err());
        assert!(port_spec("80/icmp").is_err());
        assert_eq!(absolute("/app", "sub/../x"), "/app/x");
        assert_eq!(absolute("/app", "/srv"), "/srv");
        assert_eq!(absolute("/", "."), "/");
    }
}
