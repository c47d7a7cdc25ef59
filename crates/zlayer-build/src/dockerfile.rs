//! Reading a Dockerfile (`parse-dockerfile`) into the steps zlayer builds,
//! each with its line and column. Instructions or flags outside the
//! supported subset are refused here, before anything runs, with where they
//! are and what to do instead.

use parse_dockerfile::{Command, Flag, Instruction, Source};

use crate::error::BuildError;

/// A command as written: exec form (`["a", "b"]`) or shell form (`a b`).
#[derive(Clone, Debug, PartialEq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    From(String),
    Arg(String),
    Env(String),
    Label(String),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    StopSignal(String),
    Volume(Vec<String>),
    Maintainer(String),
    Shell(Vec<String>),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    Run(CommandForm),
    Copy(CopyOp),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CopyOp {
    /// `ADD`: a local tar archive is extracted.
    pub add: bool,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub line: usize,
    pub col: usize,
    /// The instruction as written, continuation lines joined (for output).
    pub text: String,
    pub op: Op,
}

/// The `ARG`s before `FROM`, the `FROM`, and the steps after it.
#[derive(Debug)]
pub struct Parsed {
    pub global_args: Vec<Step>,
    pub from: Step,
    pub steps: Vec<Step>,
}

pub fn parse(file: &str, text: &str) -> Result<Parsed, BuildError> {
    let doc = parse_dockerfile::parse(text).map_err(|e| {
        let msg = e.to_string();
        let msg = match msg.split(" at line ").next().unwrap_or(&msg) {
            "expected FROM" => "the first instruction must be FROM (or ARG)".to_string(),
            "expected at least one FROM instruction" => "the Dockerfile has no FROM".to_string(),
            m => m.to_string(),
        };
        BuildError::at(file, e.line().max(1), e.column().max(1), msg)
    })?;
    let escape = doc
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let starts: Vec<usize> = doc.instructions.iter().map(keyword_start).collect();
    let mut global_args = Vec::new();
    let mut from = None;
    let mut steps = Vec::new();
    for (i, ins) in doc.instructions.iter().enumerate() {
        let start = starts[i];
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let (line, col) = line_col(text, start);
        let err = |msg: String| BuildError::at(file, line, col, msg);
        let op = convert(ins, escape).map_err(err)?;
        let step = Step {
            line,
            col,
            text: display(&text[start..end], escape),
            op,
        };
        match (&step.op, &from) {
            (Op::From(_), None) => from = Some(step),
            (Op::From(_), Some(_)) => {
                return Err(err(
                    "a second FROM: multi-stage builds are not supported; build each stage \
                     as its own image and COPY from a context that holds its output"
                        .into(),
                ))
            }
            (Op::Arg(_), None) => global_args.push(step),
            (_, None) => return Err(err("the first instruction must be FROM (or ARG)".into())),
            (_, Some(_)) => steps.push(step),
        }
    }
    let from =
        from.ok_or_else(|| BuildError::at(file, 1, 1, "the Dockerfile has no FROM".into()))?;
    Ok(Parsed {
        global_args,
        from,
        steps,
    })
}

fn convert(ins: &Instruction<'_>, escape: char) -> Result<Op, String> {
    Ok(match ins {
        Instruction::From(f) => {
            no_flags(&f.options, "FROM", "")?;
            Op::From(f.image.value.to_string())
        }
        Instruction::Arg(a) => Op::Arg(a.arguments.value.to_string()),
        Instruction::Env(e) => Op::Env(e.arguments.value.to_string()),
        Instruction::Label(l) => Op::Label(l.arguments.value.to_string()),
        Instruction::Workdir(w) => Op::Workdir(w.arguments.value.to_string()),
        Instruction::User(u) => Op::User(u.arguments.value.to_string()),
        Instruction::Stopsignal(s) => Op::StopSignal(s.arguments.value.to_string()),
        Instruction::Maintainer(m) => Op::Maintainer(m.name.value.to_string()),
        Instruction::Expose(e) => {
            Op::Expose(e.arguments.iter().map(|a| a.value.to_string()).collect())
        }
        Instruction::Volume(v) => Op::Volume(match &v.arguments {
            parse_dockerfile::JsonOrStringArray::Json(j) => {
                j.value.iter().map(|a| a.value.to_string()).collect()
            }
            parse_dockerfile::JsonOrStringArray::String(s) => {
                s.iter().map(|a| a.value.to_string()).collect()
            }
        }),
        Instruction::Shell(s) => {
            Op::Shell(s.arguments.iter().map(|a| a.value.to_string()).collect())
        }
        Instruction::Cmd(c) => Op::Cmd(command(&c.arguments, escape)),
        Instruction::Entrypoint(e) => Op::Entrypoint(command(&e.arguments, escape)),
        Instruction::Run(r) => {
            no_flags(
                &r.options,
                "RUN",
                " (RUN --mount, --network and --security are not supported)",
            )?;
            match (r.here_docs.as_slice(), &r.arguments) {
                ([], args) => Op::Run(command(args, escape)),
                ([doc], Command::Shell(s)) if s.value.trim().is_empty() => {
                    Op::Run(CommandForm::Shell(doc.value.to_string()))
                }
                _ => {
                    return Err(
                        "only `RUN <<EOF` with one here-document and no command is supported"
                            .into(),
                    )
                }
            }
        }
        Instruction::Copy(c) => copy_op(false, &c.options, &c.src, &c.dest.value)?,
        Instruction::Add(a) => copy_op(true, &a.options, &a.src, &a.dest.value)?,
        Instruction::Healthcheck(_) => return Err(
            "HEALTHCHECK is not supported: give the service a `health` check in its zlayer spec"
                .into(),
        ),
        Instruction::Onbuild(_) => return Err("ONBUILD is not supported".into()),
        _ => return Err("this instruction is not supported".into()),
    })
}

fn copy_op(add: bool, flags: &[Flag<'_>], src: &[Source<'_>], dest: &str) -> Result<Op, String> {
    let name = if add { "ADD" } else { "COPY" };
    let mut op = CopyOp {
        add,
        chown: None,
        chmod: None,
        sources: Vec::new(),
        dest: dest.to_string(),
    };
    for f in flags {
        let value = f.value.as_ref().map(|v| v.value.to_string());
        match (&*f.name.value, value) {
            ("chown", Some(v)) => op.chown = Some(v),
            ("chmod", Some(v)) => op.chmod = Some(v),
            ("from", _) => {
                return Err(format!(
                    "{name} --from is not supported (no multi-stage builds): put the files in the build context"
                ))
            }
            (other, _) => {
                return Err(format!(
                    "{name} --{other} is not supported; zlayer takes --chown=USER[:GROUP] and --chmod=MODE"
                ))
            }
        }
    }
    for s in src {
        match s {
            Source::Path(p) => {
                let v = p.value.to_string();
                if v.contains("://") || v.starts_with("git@") {
                    return Err(format!(
                        "{name} from a URL (`{v}`) is not supported: fetch the file into the build context and COPY it"
                    ));
                }
                op.sources.push(v);
            }
            _ => return Err(format!("{name} with a here-document is not supported")),
        }
    }
    Ok(Op::Copy(op))
}

fn no_flags(flags: &[Flag<'_>], name: &str, hint: &str) -> Result<(), String> {
    match flags.first() {
        None => Ok(()),
        Some(f) => Err(format!("{name} --{} is not supported{hint}", f.name.value)),
    }
}

fn command(c: &Command<'_>, escape: char) -> CommandForm {
    match c {
        Command::Exec(v) => {
            CommandForm::Exec(v.value.iter().map(|s| s.value.to_string()).collect())
        }
        Command::Shell(s) => CommandForm::Shell(join_continuations(s.value, escape)),
        _ => CommandForm::Shell(String::new()),
    }
}

/// Shell-form text as the shell gets it: `\` + newline joins lines, and
/// comment lines inside a continued instruction are dropped (Docker's rules).
pub fn join_continuations(raw: &str, escape: char) -> String {
    let mut out = String::new();
    for (i, line) in raw.split('\n').enumerate() {
        if i > 0 && line.trim_start().starts_with('#') {
            continue;
        }
        let trimmed = line.trim_end();
        match trimmed.strip_suffix(escape) {
            Some(head) => out.push_str(head),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.trim_end().to_string()
}

fn display(raw: &str, escape: char) -> String {
    let joined = join_continuations(raw.trim(), escape);
    let one_line = joined.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 160 {
        format!("{}…", one_line.chars().take(160).collect::<String>())
    } else {
        one_line
    }
}

fn keyword_start(ins: &Instruction<'_>) -> usize {
    match ins {
        Instruction::Add(i) => i.add.span.start,
        Instruction::Arg(i) => i.arg.span.start,
        Instruction::Cmd(i) => i.cmd.span.start,
        Instruction::Copy(i) => i.copy.span.start,
        Instruction::Entrypoint(i) => i.entrypoint.span.start,
        Instruction::Env(i) => i.env.span.start,
        Instruction::Expose(i) => i.expose.span.start,
        Instruction::From(i) => i.from.span.start,
        Instruction::Healthcheck(i) => i.healthcheck.span.start,
        Instruction::Label(i) => i.label.span.start,
        Instruction::Maintainer(i) => i.maintainer.span.start,
        Instruction::Onbuild(i) => i.onbuild.span.start,
        Instruction::Run(i) => i.run.span.start,
        Instruction::Shell(i) => i.shell.span.start,
        Instruction::Stopsignal(i) => i.stopsignal.span.start,
        Instruction::User(i) => i.user.span.start,
        Instruction::Volume(i) => i.volume.span.start,
        Instruction::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_with_positions() {
        let p = parse(
            "Dockerfile",
            "ARG BASE=busybox\nFROM $BASE\n\nRUN echo a \\\n  # note\n  && echo b\nCMD [\"x\", \"y\"]\n",
        )
        .unwrap();
        assert_eq!(p.global_args.len(), 1);
        assert_eq!(p.from.op, Op::From("$BASE".into()));
        assert_eq!((p.steps[0].line, p.steps[0].col), (4, 1));
        assert_eq!(
            p.steps[0].op,
            Op::Run(CommandForm::Shell("echo a   && echo b".into()))
        );
        assert_eq!(p.steps[0].text, "RUN echo a && echo b");
        assert_eq!(
            p.steps[1].op,
            Op::Cmd(CommandForm::Exec(vec!["x".into(), "y".into()]))
        );
    }

    #[test]
    fn refusals_name_line_and_reason() {
        let cases = [
            ("FROM a\nBOGUS x\n", "Dockerfile:2:1: unknown instruction"),
            ("FROM a\nFROM b\n", "Dockerfile:2:1: a second FROM"),
            (
                "RUN x\n",
                "Dockerfile:1:1: the first instruction must be FROM",
            ),
            (
                "FROM a\n  COPY --from=b x y\n",
                "Dockerfile:2:3: COPY --from is not supported",
            ),
            (
                "FROM a\nADD http://h/x /x\n",
                "Dockerfile:2:1: ADD from a URL",
            ),
            (
                "FROM a\nHEALTHCHECK CMD true\n",
                "Dockerfile:2:1: HEALTHCHECK is not supported",
            ),
            (
                "FROM a\nRUN --mount=type=cache,target=/x true\n",
                "Dockerfile:2:1: RUN --mount is not supported",
            ),
            (
                "FROM a\nCOPY --chmod=755 --owner=1 a b\n",
                "Dockerfile:2:1: COPY --owner is not supported",
            ),
            (
                "# just a comment\n",
                "Dockerfile:1:1: the Dockerfile has no FROM",
            ),
        ];
        for (text, want) in cases {
            let got = parse("Dockerfile", text).unwrap_err().to_string();
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want {want:?}"
            );
        }
    }
}
