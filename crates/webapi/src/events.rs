//! `GET /spate/events`: the session's events as Server-Sent Events. Each event's name is
//! its tag (`added`, `completed`...) and its data the JSON of the [`SessionEvent`]. A
//! client that reads too slowly misses events (the broadcast channel drops the oldest for
//! it, never blocking the session) and is told how many with a `lagged` event.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use session::SessionEvent;
use tokio::sync::{broadcast, watch};

use crate::App;

/// A comment line this often keeps proxies and idle timers from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn to_sse(ev: &SessionEvent) -> Event {
    let value = serde_json::to_value(ev).unwrap_or(serde_json::Value::Null);
    let name = value
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("event")
        .to_string();
    Event::default().event(name).data(value.to_string())
}

struct Feed {
    rx: broadcast::Receiver<SessionEvent>,
    closing: watch::Receiver<bool>,
}

fn feed(
    rx: broadcast::Receiver<SessionEvent>,
    closing: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(Feed { rx, closing }, |mut f| async move {
        if *f.closing.borrow() {
            return None;
        }
        let got = tokio::select! {
            got = f.rx.recv() => got,
            _ = f.closing.wait_for(|c| *c) => return None,
        };
        let event = match got {
            Ok(ev) => to_sse(&ev),
            Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{{\"event\":\"lagged\",\"skipped\":{n}}}")),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), f))
    })
}

pub(crate) async fn stream(
    State(app): State<App>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.session.subscribe();
    Sse::new(feed(rx, app.closing.subscribe())).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn events_flow_lag_is_skipped_and_closing_ends_the_stream() {
        let (tx, rx) = broadcast::channel(4);
        let (close_tx, close_rx) = watch::channel(false);
        let mut s = Box::pin(feed(rx, close_rx));
        tx.send(SessionEvent::Added {
            id: 1,
            name: "a".into(),
        })
        .unwrap();
        assert!(s.next().await.is_some());
        // Ten events into a channel of four: the reader is told it lagged, then goes on.
        for i in 0..10 {
            tx.send(SessionEvent::Completed {
                id: i,
                name: "x".into(),
            })
            .unwrap();
        }
        let mut n = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), s.next()).await {
            n += 1;
        }
        assert_eq!(n, 5, "one lagged notice and the last four events");
        close_tx.send_replace(true);
        assert!(s.next().await.is_none());
    }

    #[test]
    fn event_name_is_the_tag() {
        let ev = to_sse(&SessionEvent::DoneSeeding {
            id: 3,
            name: "n".into(),
        });
        let text = format!("{ev:?}");
        assert!(text.contains("done_seeding"), "{text}");
    }
}
