//! A session's setup: connect and authenticate, say hello, ship the program if the node
//! lacks it, and wait until the node's workers are ready.

use crate::channel::{connect_client, NetError, SecureReader, SecureWriter};
use crate::client::classify::{connection_lost, handshake_error, refusal};
use crate::client::context::ClientContext;
use crate::client::dial::dial_node;
use crate::client::node_state::NodeState;
use crate::program::{this_target, Program};
use crate::protocol::Message;
use pp_runtime::NodeFailure;
use std::io::Read;
use std::time::Duration;

/// How long a node may take to answer the hello and to start its workers.
const NODE_SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Size of one upload chunk.
const UPLOAD_CHUNK: usize = 1 << 20;

/// Connects to `node` and sets the session up; returns the connection's halves and the
/// node's worker count, or why the node cannot be used.
pub(crate) async fn set_up(
    node: &NodeState,
    ctx: &ClientContext,
) -> Result<(SecureReader, SecureWriter, u32), NodeFailure> {
    let (mut reader, mut writer) = connect_and_authenticate(node, ctx).await?;
    let (workers, _) = handshake(&mut reader, &mut writer, ctx).await?;
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

/// Hello, upload if asked, wait for `Ready`, on an authenticated connection; returns the
/// node's worker count and the name it gives itself (in its hello).
pub(crate) async fn handshake(
    reader: &mut SecureReader,
    writer: &mut SecureWriter,
    ctx: &ClientContext,
) -> Result<(u32, String), NodeFailure> {
    let send_err = |e: NetError| connection_lost(&e);
    writer
        .send(&Message::ClientHello {
            program_sha256: ctx.program.sha256,
            program_size: ctx.program.size,
            target: this_target(),
            registry_fingerprint: ctx.registry_fingerprint,
            forward_output: ctx.options.forward_output,
        })
        .await
        .map_err(send_err)?;
    let (need_upload, name) = match recv_setup(reader).await? {
        Message::ServerHello {
            need_upload,
            node_name,
            ..
        } => (need_upload, node_name),
        other => return Err(NodeFailure::Other(protocol_error(&other, "a hello"))),
    };
    if need_upload {
        upload(writer, ctx.program).await?;
    }
    match recv_setup(reader).await? {
        Message::Ready { workers } if workers > 0 => Ok((workers, name)),
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
