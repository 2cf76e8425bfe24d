//! The handshake against good and bad peers, over real TCP on 127.0.0.1: wrong secret,
//! wrong magic, other protocol version, replayed handshake, silent peer, truncated
//! handshake. Every failure must be a clean error on the side that detects it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, handshake, secret, tcp_pair, Tap, TapControl};
use pp_net::preamble::{self, PREAMBLE_LEN, PROTOCOL_VERSION};
use pp_net::{
    accept_server, client_handshake, connect_client, ChannelConfig, Message, NetError, Peer, Secret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short_timeout() -> ChannelConfig {
    let mut config = ChannelConfig::default();
    config.handshake_timeout = Duration::from_millis(200);
    config
}

/// Reads everything the peer sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    // A reset instead of a clean close is fine too: we only look at what arrived.
    let _ = stream.read_to_end(&mut bytes).await;
    bytes
}

#[tokio::test]
async fn matching_secrets_authenticate() {
    bounded(async {
        let ((_, mut to_server), (mut from_client, _)) = common::connected().await;
        to_server
            .send(&Message::Heartbeat { seq: 1 })
            .await
            .unwrap();
        assert_eq!(
            from_client.recv().await.unwrap(),
            Message::Heartbeat { seq: 1 }
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_secret_fails_cleanly_on_both_sides() {
    bounded(async {
        let other = Secret::new("another secret").unwrap();
        let config = ChannelConfig::default();
        let (client, server) = handshake(secret(), &other, config, config).await;
        let client = client.unwrap_err();
        let server = server.unwrap_err();
        assert!(
            matches!(client, NetError::AuthenticationFailed { .. }),
            "client: {client}"
        );
        assert!(
            matches!(server, NetError::AuthenticationFailed { .. }),
            "server: {server}"
        );
        assert!(
            server.to_string().contains("does not know our secret"),
            "{server}"
        );
        assert!(client.to_string().contains("different secret"), "{client}");
    })
    .await;
}

#[tokio::test]
async fn server_rejects_wrong_magic_and_still_answers_its_preamble() {
    bounded(async {
        let (mut raw, server) = tcp_pair().await;
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = accept_server(server, secret(), ChannelConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::WrongMagic { found, .. } if &found == b"GET "),
            "{err}"
        );
        assert!(
            err.to_string().contains("not speaking the pp protocol"),
            "{err}"
        );
        assert_eq!(read_to_close(&mut raw).await, preamble::ours());
    })
    .await;
}

#[tokio::test]
async fn client_rejects_a_server_with_wrong_magic() {
    bounded(async {
        let (client, mut raw) = tcp_pair().await;
        let fake = async move {
            let mut theirs = [0u8; PREAMBLE_LEN];
            raw.read_exact(&mut theirs).await.unwrap();
            raw.write_all(b"SSH-2.0-").await.unwrap();
            raw
        };
        let (result, _raw) = tokio::join!(
            connect_client(client, secret(), ChannelConfig::default()),
            fake
        );
        assert!(
            matches!(result.unwrap_err(), NetError::WrongMagic { found, .. } if &found == b"SSH-")
        );
    })
    .await;
}

#[tokio::test]
async fn server_reports_version_mismatch_naming_both_versions() {
    bounded(async {
        let (mut raw, server) = tcp_pair().await;
        let other = PROTOCOL_VERSION + 1;
        raw.write_all(&preamble::encode(other)).await.unwrap();
        let err = accept_server(server, secret(), ChannelConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::VersionMismatch { ours, theirs, .. }
                    if ours == PROTOCOL_VERSION && theirs == other
            ),
            "{err}"
        );
        // The server still told the client its own version before closing.
        assert_eq!(read_to_close(&mut raw).await, preamble::ours());
    })
    .await;
}

#[tokio::test]
async fn client_reports_version_mismatch_naming_both_versions() {
    bounded(async {
        let (client, mut raw) = tcp_pair().await;
        let addr = raw.local_addr().unwrap();
        let fake = async move {
            let mut theirs = [0u8; PREAMBLE_LEN];
            raw.read_exact(&mut theirs).await.unwrap();
            assert_eq!(theirs, preamble::ours());
            raw.write_all(&preamble::encode(PROTOCOL_VERSION + 1))
                .await
                .unwrap();
            raw
        };
        let (result, _raw) = tokio::join!(
            connect_client(client, secret(), ChannelConfig::default()),
            fake
        );
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "peer {addr} speaks pp protocol version {}, this build speaks version \
                 {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 1
            )
        );
    })
    .await;
}

#[tokio::test]
async fn replayed_handshake_fails_on_a_fresh_server() {
    bounded(async {
        // Record everything a genuine client sends in one session.
        let (client, server) = tcp_pair().await;
        let peer = Peer(client.peer_addr().ok());
        let (read_half, write_half) = client.into_split();
        let control = Arc::new(Mutex::new(TapControl::default()));
        let tap = Tap {
            inner: write_half,
            control: Arc::clone(&control),
        };
        let config = ChannelConfig::default();
        let (client, server) = tokio::join!(
            client_handshake(read_half, tap, peer, secret(), config),
            accept_server(server, secret(), config),
        );
        let ((_, mut to_server), (mut from_client, _)) = (client.unwrap(), server.unwrap());
        to_server.send(&Message::UploadDone).await.unwrap();
        assert_eq!(from_client.recv().await.unwrap(), Message::UploadDone);
        let recorded = control.lock().unwrap().recorded.clone();

        // Play the recording, byte for byte, to a fresh server.
        let (mut replayer, server) = tcp_pair().await;
        replayer.write_all(&recorded).await.unwrap();
        let err = accept_server(server, secret(), config).await.unwrap_err();
        assert!(
            matches!(err, NetError::AuthenticationFailed { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("did not confirm"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn silent_client_hits_the_handshake_timeout() {
    bounded(async {
        let (_silent, server) = tcp_pair().await;
        let err = accept_server(server, secret(), short_timeout())
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::HandshakeTimeout { timeout, .. } if timeout == Duration::from_millis(200)),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn silent_server_hits_the_handshake_timeout() {
    bounded(async {
        let (client, _silent) = tcp_pair().await;
        let err = connect_client(client, secret(), short_timeout())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::HandshakeTimeout { .. }), "{err}");
    })
    .await;
}

#[tokio::test]
async fn handshake_cut_short_is_an_error_not_a_hang() {
    bounded(async {
        let (mut raw, server) = tcp_pair().await;
        raw.write_all(&preamble::ours()).await.unwrap();
        // Announce a 48-byte handshake message, send 5 bytes of it, and hang up.
        raw.write_all(&[48, 0, 1, 2, 3, 4, 5]).await.unwrap();
        raw.shutdown().await.unwrap();
        let err = accept_server(server, secret(), ChannelConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Truncated {
                    during: "a handshake message",
                    ..
                }
            ),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn oversized_handshake_message_is_refused() {
    bounded(async {
        let (mut raw, server) = tcp_pair().await;
        raw.write_all(&preamble::ours()).await.unwrap();
        raw.write_all(&u16::MAX.to_le_bytes()).await.unwrap();
        let err = accept_server(server, secret(), ChannelConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::FrameTooLarge {
                    len: 65535,
                    limit: 1024,
                    ..
                }
            ),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn garbage_handshake_message_fails_authentication() {
    bounded(async {
        let (mut raw, server) = tcp_pair().await;
        raw.write_all(&preamble::ours()).await.unwrap();
        let mut garbage = vec![48, 0];
        garbage.extend_from_slice(&[0x5a; 48]);
        raw.write_all(&garbage).await.unwrap();
        let err = accept_server(server, secret(), ChannelConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::AuthenticationFailed { .. }),
            "{err}"
        );
    })
    .await;
}
