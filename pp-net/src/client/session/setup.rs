//! A session's setup: connect and authenticate, say hello (offering every build of the
//! program), ship the build the node chose if it lacks it, and wait until the node's
//! workers are ready. A node that runs none of the builds is a `NodeFailure::NoBuild`,
//! which names the command that makes its build.

use crate::channel::{connect_client, NetError, SecureReader, SecureWriter};
use crate::client::classify::{connection_lost, handshake_error, refusal};
use crate::client::context::ClientContext;
use crate::client::dial::dial_node;
use crate::client::node_state::NodeState;
use crate::program::{this_target, Program};
use crate::protocol::BuildOffer;
use crate::protocol::Message;
use pp_runtime::NodeFailure;
use pp_runtime::Platform;
use std::io::Read;
use std::time::Duration;

/// How long a node may take to answer the hello and to start its workers.
const NODE_SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Size of one upload chunk.
const UPLOAD_CHUNK: usize = 1 << 20;

/// Connects to `node` and sets the session up; returns the connection's halves and the
/// node's worker count, or why the node cannot be used. The node's platform is recorded
/// on `node` as soon as its hello says it.
pub(crate) async fn set_up(
    node: &NodeState,
    ctx: &ClientContext,
) -> Result<(SecureReader, SecureWriter, u32), NodeFailure> {
    let (mut reader, mut writer) = connect_and_authenticate(node, ctx).await?;
    let ready = handshake(&mut reader, &mut writer, ctx).await?;
    node.set_platform(ready.platform);
    let workers = ready.workers;
    Ok((reader, writer, workers))
}

async fn connect_and_authenticate(
    node: &NodeState,
    ctx: &ClientContext,
) -> Result<(SecureReader, SecureWriter), NodeFailure> {
    let stream = dial_node(&node.address).await?;
    connect_client(stream, &ctx.secret, ctx.channel)
        .await
        .map_err(|e| handshake_error(&e))
}

/// What a node's setup told: its workers, its name for itself and its platform.
pub(crate) struct Handshaken {
    /// The node's worker count.
    pub(crate) workers: u32,
    /// The name the node gives itself (in its hello).
    pub(crate) name: String,
    /// What the node runs.
    pub(crate) platform: Platform,
}

/// Hello (offering every build), upload if asked, wait for `Ready`, on an authenticated
/// connection.
pub(crate) async fn handshake(
    reader: &mut SecureReader,
    writer: &mut SecureWriter,
    ctx: &ClientContext,
) -> Result<Handshaken, NodeFailure> {
    let send_err = |e: NetError| connection_lost(&e);
    let running = &ctx.programs.running().program;
    let builds = (ctx.programs.builds().iter().skip(1))
        .map(|build| BuildOffer {
            platform: build.platform.clone(),
            program_sha256: build.program.sha256,
            program_size: build.program.size,
        })
        .collect();
    writer
        .send(&Message::ClientHello {
            program_sha256: running.sha256,
            program_size: running.size,
            target: this_target(),
            registry_fingerprint: ctx.registry_fingerprint,
            forward_output: ctx.options.forward_output,
            builds,
        })
        .await
        .map_err(send_err)?;
    let (need_upload, name, platform, build) = match recv_setup(reader).await? {
        Message::ServerHello {
            need_upload,
            node_name,
            platform,
            build,
            ..
        } => (need_upload, node_name, platform, build),
        other => return Err(NodeFailure::Other(protocol_error(&other, "a hello"))),
    };
    let Some(build) = build else {
        return Err(NodeFailure::NoBuild {
            target: platform.to_string(),
            command: ctx.programs.build_command(&platform),
        });
    };
    let Some(build) = usize::try_from(build)
        .ok()
        .and_then(|i| ctx.programs.get(i))
    else {
        return Err(NodeFailure::Other(format!(
            "protocol error: the node chose build {build} of {}",
            ctx.programs.builds().len()
        )));
    };
    if need_upload {
        upload(writer, &build.program).await?;
    }
    match recv_setup(reader).await? {
        Message::Ready { workers } if workers > 0 => Ok(Handshaken {
            workers,
            name,
            platform,
        }),
        Message::Ready { .. } => Err(NodeFailure::Other("the node has no workers".into())),
        other => Err(NodeFailure::Other(protocol_error(&other, "`Ready`"))),
    }
}

async fn recv_setup(reader: &mut SecureReader) -> Result<Message, NodeFailure> {
    match tokio::time::timeout(NODE_SETUP_TIMEOUT, reader.recv()).await {
        Err(_) => Err(NodeFailure::Other(format!(
            "the node did not answer the setup within {NODE_SETUP_TIMEOUT:?}"
        ))),
        Ok(Err(e)) => Err(connection_lost(&e)),
        Ok(Ok(Message::Refused { reason })) => Err(refusal(&reason)),
        Ok(Ok(message)) => Ok(message),
    }
}

/// Why a node that sent `message` where `wanted` belonged is not usable (in setup or
/// later).
pub(crate) fn protocol_error(message: &Message, wanted: &str) -> String {
    format!("protocol error: expected {wanted}, got {}", message.kind())
}

async fn upload(writer: &mut SecureWriter, program: &Program) -> Result<(), NodeFailure> {
    let unreadable = |e: std::io::Error| {
        NodeFailure::Other(format!("cannot read {}: {e}", program.path.display()))
    };
    let mut file = std::fs::File::open(&program.path).map_err(unreadable)?;
    let mut offset = 0u64;
    loop {
        let mut bytes = vec![0u8; UPLOAD_CHUNK];
        let n = file.read(&mut bytes).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        bytes.truncate(n);
        writer
            .send(&Message::UploadChunk { offset, bytes })
            .await
            .map_err(|e| connection_lost(&e))?;
        offset += n as u64;
    }
    if offset != program.size {
        return Err(NodeFailure::Other(format!(
            "{} changed while it was uploaded ({offset} bytes read, {} expected)",
            program.path.display(),
            program.size
        )));
    }
    writer
        .send(&Message::UploadDone)
        .await
        .map_err(|e| connection_lost(&e))?;
    pp_runtime::debug!(bytes = offset, "program uploaded");
    Ok(())
}
