//! The ceiling: a bare tokio-tungstenite relay. A client's first text frame is its name; every
//! later frame is forwarded, unchanged, to the connection named by its `"to"` member. Same
//! structure as the gateway (a task per connection, a bounded queue per receiver), none of
//! its checks.

use std::sync::Arc;

use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Routes = Arc<DashMap<String, mpsc::Sender<Utf8Bytes>>>;

#[derive(Deserialize)]
struct To<'a> {
    #[serde(borrow)]
    to: &'a str,
}

/// Serves on an ephemeral port (printed on stdout) until killed.
pub async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let routes: Routes = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let Some(Ok(Message::Text(name))) = stream.next().await else {
                return;
            };
            let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(64);
            routes.insert(name.to_string(), tx);
            let writer = tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    if sink.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(to) = serde_json::from_str::<To<'_>>(&text) else {
                    continue;
                };
                if let Some(route) = routes.get(to.to) {
                    let _ = route.try_send(text.clone());
                }
            }
            routes.remove(name.as_str());
            writer.abort();
        });
    }
}
