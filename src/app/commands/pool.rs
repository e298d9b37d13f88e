//! `pool`: databases per test for the pytest plugin, made ahead of the tests that need them
//! (see `provision::pool`). A line protocol on stdin and stdout, so one process serves a whole
//! test session.

use std::collections::VecDeque;
use std::io::BufRead as _;

use tokio::task::JoinSet;

use crate::app::output::{errln, outln};
use crate::app::settings::{Settings, is_valid_identifier};
use crate::app::{policy, targets};
use crate::cli::PoolArgs;
use crate::provision::pool::{Pool, Ready};
use crate::{db, error};

/// A line the plugin sent.
enum Command {
    Clone,
    Drop(String),
    Other(String),
}

/// Run `pool` until stdin closes.
///
/// # Errors
/// Production (refused); the template missing, stale or changed; connections.
pub fn run(settings: &Settings, args: &PoolArgs) -> anyhow::Result<()> {
    policy::check(settings, policy::Action::Pool)?;
    let template = args
        .template
        .clone()
        .unwrap_or_else(|| format!("{}_template", settings.database.name));
    if !is_valid_identifier(&template) {
        return Err(error::usage(format!(
            "template name `{template}` must match ^[a-z_][a-z0-9_]{{0,62}}$"
        )));
    }
    let admin = targets::admin(settings, targets::Local::Start)?;
    let migrations = targets::migrations(settings)?;
    let ahead = usize::from(args.ahead);
    // stdin is read on a thread of its own (blocking reads); commands come over a channel.
    let (sender, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim().to_string();
            let command = if line == "clone" {
                Command::Clone
            } else if let Some(name) = line.strip_prefix("drop ") {
                Command::Drop(name.trim().to_string())
            } else {
                Command::Other(line)
            };
            if sender.send(command).is_err() {
                break;
            }
        }
    });
    db::block_on(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (mut pool, swept) = Pool::open(
            &admin,
            &template,
            &migrations,
            settings.migrate.wait_timeout,
        )
        .await?;
        outln!(
            "{}",
            serde_json::json!({"ready": true, "template": template, "swept": swept})
        );
        let maker = pool.maker();
        let mut ready: VecDeque<Ready> = VecDeque::new();
        let mut making: JoinSet<(String, anyhow::Result<Ready>)> = JoinSet::new();
        let mut dropping: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let mut waiting = 0usize;
        loop {
            // Keep `ahead` clones ready (and one more for each request still waiting).
            while ready.len() + making.len() < ahead + waiting {
                let name = pool.reserve();
                let maker = maker.clone();
                making.spawn(async move {
                    let made = maker.make(&name).await;
                    (name, made)
                });
            }
            while waiting > 0
                && let Some(clone) = ready.pop_front()
            {
                waiting -= 1;
                outln!("{}", serde_json::to_string(&clone)?);
            }
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Clone) => waiting += 1,
                    Some(Command::Drop(name)) => {
                        if pool.live.remove(&name) {
                            let maker = maker.clone();
                            dropping.spawn(async move { maker.drop(&name).await });
                        } else {
                            outln!("{}", serde_json::json!({"error": format!("`{name}` is not a clone of this session")}));
                        }
                    }
                    Some(Command::Other(line)) => {
                        outln!("{}", serde_json::json!({"error": format!("unknown command `{line}`; send `clone` or `drop NAME`")}));
                    }
                },
                Some(done) = making.join_next(), if !making.is_empty() => {
                    match done {
                        Ok((_, Ok(clone))) => ready.push_back(clone),
                        Ok((name, Err(e))) => {
                            pool.live.remove(&name);
                            if waiting > 0 {
                                waiting -= 1;
                                outln!("{}", serde_json::json!({"error": format!("{e:#}")}));
                            } else {
                                errln!("warning: {e:#}");
                            }
                        }
                        Err(e) => errln!("warning: a clone task failed: {e}"),
                    }
                }
                Some(done) = dropping.join_next(), if !dropping.is_empty() => {
                    if let Ok(Err(e)) = done {
                        errln!("warning: {e:#}");
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
        }
        // The session ends: what is being made finishes (and is dropped with the rest).
        while making.join_next().await.is_some() {}
        while dropping.join_next().await.is_some() {}
        pool.close().await
    })
}
