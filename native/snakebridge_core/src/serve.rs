//! The worker's half of the frame protocol (the core's half is [`crate::worker`]): one
//! connection's frames routed to what runs its calls, the calls in flight with their
//! cancellation and stream credit, and the worker's own requests to the BEAM (callbacks)
//! waiting for their answers. Nothing here needs Python: the worker's binding supplies an
//! [`Executor`] that runs calls, and hooks for what only it can do (interrupting running
//! code, making room before a thread blocks).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::callback::{self, CallbackId};
use crate::framing::Assembler;
use crate::proto::{self, error::Kind, frame::Body, Frame};

/// Where the frames answering one connection go: a channel that a writer task drains (gRPC),
/// or a [`FrameSink`] that the sending thread writes through itself (the worker's local
/// carrier, whose threads write their own replies: no hand-off to an I/O thread).
#[derive(Clone, Debug)]
pub struct ReplySender(Sink);

#[derive(Clone, Debug)]
enum Sink {
    Channel(UnboundedSender<Result<Frame, Status>>),
    Direct(Arc<dyn FrameSink>),
}

/// Something that sends a connection's frames from the thread that has them.
pub trait FrameSink: Send + Sync + std::fmt::Debug {
    /// Sends `frame` (or queues it behind a write in progress); `Err` once the connection
    /// is gone.
    fn send(&self, frame: Frame) -> Result<(), Closed>;
}

/// The connection a frame was for is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl ReplySender {
    /// Frames go into `sender`, for the task that drains it.
    pub fn channel(sender: UnboundedSender<Result<Frame, Status>>) -> ReplySender {
        ReplySender(Sink::Channel(sender))
    }

    /// Frames go through `sink`, on the sending thread.
    pub fn direct(sink: Arc<dyn FrameSink>) -> ReplySender {
        ReplySender(Sink::Direct(sink))
    }

    /// Sends `frame`; `Err` once the connection is gone (nobody waits for it then).
    pub fn send(&self, frame: Frame) -> Result<(), Closed> {
        match &self.0 {
            Sink::Channel(sender) => sender.send(Ok(frame)).map_err(|_| Closed),
            Sink::Direct(sink) => sink.send(frame),
        }
    }
}

/// An error frame answering `request_id`.
pub fn error_frame(request_id: u64, kind: Kind, message: impl Into<String>) -> Frame {
    Frame {
        request_id,
        body: Some(Body::Error(proto::Error {
            kind: kind as i32,
            message: message.into(),
            exception: None,
        })),
    }
}

/// The steering of one call: cancellation, the credit a stream's consumer gave, and who
/// runs it (an id the executor chooses, such as a thread's, for interrupting it).
#[derive(Debug, Default)]
pub struct Control {
    cancelled: AtomicBool,
    credit: Mutex<u64>,
    changed: Condvar,
    runner: AtomicU64,
    interrupted: AtomicBool,
}

impl Control {
    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Marks the call cancelled and wakes a stream waiting for credit.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        let _guard = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }

    /// Gives a stream `chunks` more credit.
    pub fn add_credit(&self, chunks: u32) {
        let mut credit = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        *credit = credit.saturating_add(u64::from(chunks));
        self.changed.notify_all();
    }

    /// Blocks until one more chunk may be sent (taking one credit); `false` when the call
    /// was cancelled instead.
    pub fn acquire_credit(&self) -> bool {
        let mut credit = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_cancelled() {
                return false;
            }
            if *credit > 0 {
                *credit -= 1;
                return true;
            }
            credit = self.changed.wait(credit).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records who runs the call now (non-zero), for [`Control::runner`].
    pub fn set_runner(&self, runner: u64) {
        self.runner.store(runner, Ordering::SeqCst);
    }

    /// Who runs the call now; 0 while nobody does.
    pub fn runner(&self) -> u64 {
        self.runner.load(Ordering::SeqCst)
    }

    /// The call stopped running: who ran it, and whether an interruption was asked for
    /// meanwhile (which must not reach that runner's next call).
    pub fn take_runner(&self) -> (u64, bool) {
        let runner = self.runner.swap(0, Ordering::SeqCst);
        (runner, self.interrupted.load(Ordering::SeqCst))
    }

    /// Records that the runner was asked to interrupt the call.
    pub fn mark_interrupted(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }
}

/// The calls of one connection that have not been answered yet, with their controls.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<HashMap<u64, Arc<Control>>>,
}

impl InFlight {
    /// Registers a new call; `None` when `request_id` is already in flight.
    pub fn register(&self, request_id: u64) -> Option<Arc<Control>> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.contains_key(&request_id) {
            return None;
        }
        let control = Arc::new(Control::default());
        calls.insert(request_id, Arc::clone(&control));
        Some(control)
    }

    /// Marks a call cancelled and returns its control (to interrupt its code); unknown or
    /// finished ids give `None`.
    pub fn cancel(&self, request_id: u64) -> Option<Arc<Control>> {
        let control = self.get(request_id)?;
        control.cancel();
        Some(control)
    }

    /// Gives a stream more credit; unknown or finished ids are ignored.
    pub fn credit(&self, request_id: u64, chunks: u32) {
        if let Some(control) = self.get(request_id) {
            control.add_credit(chunks);
        }
    }

    /// Cancels every call (the connection is gone), so that streams waiting for credit end.
    pub fn cancel_all(&self) {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        for control in calls.values() {
            control.cancel();
        }
    }

    /// The call was answered: it leaves the connection's calls.
    pub fn finish(&self, request_id: u64) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.remove(&request_id);
    }

    fn get(&self, request_id: u64) -> Option<Arc<Control>> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(&request_id).cloned()
    }
}

/// One call frame received, for the executor to run.
#[derive(Debug)]
pub struct IncomingCall {
    /// The call frame's request id, which the frames answering it carry.
    pub request_id: u64,
    /// The call to run.
    pub call: proto::Call,
    /// When the call frame arrived; its `timeout_ms` counts from here.
    pub arrived: Instant,
    /// The call's cancellation and stream credit.
    pub control: Arc<Control>,
    /// The connection's unanswered calls; the call leaves them once answered.
    pub in_flight: Arc<InFlight>,
    /// Where the frames answering the call go.
    pub reply: ReplySender,
}

impl IncomingCall {
    /// Why the call must not run any more, if it must not: cancelled, or its deadline
    /// passed while it waited.
    pub fn refusal(&self) -> Option<String> {
        if self.control.is_cancelled() {
            return Some("the call was cancelled before it started".to_owned());
        }
        let timeout = self.call.timeout_ms;
        if timeout > 0 && self.arrived.elapsed() >= Duration::from_millis(timeout) {
            return Some(format!(
                "the call's deadline of {timeout} ms passed before it started"
            ));
        }
        None
    }

    /// How long the call has waited since it arrived, in microseconds.
    pub fn queue_us(&self) -> u64 {
        u64::try_from(self.arrived.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Answers the call with an error frame and lets it go (for an executor that cannot
    /// run it).
    pub fn refuse(self, kind: Kind, message: impl Into<String>) {
        self.in_flight.finish(self.request_id);
        let _ = self.reply.send(error_frame(self.request_id, kind, message));
    }
}

/// What runs a connection's calls: the worker's binding.
pub trait Executor: Send + Sync {
    /// Runs (or queues) a call; every call must be answered, and then leave `in_flight`.
    fn submit(&self, call: IncomingCall);
    /// The BEAM released objects and sessions.
    fn release(&self, release: proto::Release);
    /// Interrupts a cancelled call's code if it is running (best effort).
    fn interrupt(&self, control: &Arc<Control>);
}

/// The core's answer to a callback request; errors are rare and large, so boxed.
pub type CallbackOutcome = Result<proto::Payload, Box<proto::Error>>;

#[derive(Debug, Default)]
struct Waiter {
    outcome: Mutex<Option<CallbackOutcome>>,
    ready: Condvar,
}

/// One connection's requests to the BEAM (callbacks: Elixir functions called from the
/// worker) and the threads waiting for their answers.
#[derive(Debug)]
pub struct Callbacks {
    sender: ReplySender,
    waiters: Mutex<HashMap<u64, Arc<Waiter>>>,
    next_request: AtomicU64,
    closed: AtomicBool,
}

impl Callbacks {
    /// Requests sent on the connection's reply stream.
    pub fn new(sender: ReplySender) -> Callbacks {
        Callbacks {
            sender,
            waiters: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }

    fn closed_error() -> Box<proto::Error> {
        Box::new(callback::failed("the connection to the BEAM is gone"))
    }

    /// Asks the BEAM to run callback `callback_id` and blocks until it answers;
    /// `before_wait` runs once the request is sent, before blocking (the caller's chance to
    /// make room for re-entrant calls).
    pub fn request(
        &self,
        callback_id: CallbackId,
        args: proto::Payload,
        before_wait: impl FnOnce(),
    ) -> CallbackOutcome {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let waiter = Arc::new(Waiter::default());
        {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Ordering::Acquire) {
                return Err(Callbacks::closed_error());
            }
            waiters.insert(request_id, Arc::clone(&waiter));
        }
        let frame = Frame {
            request_id,
            body: Some(Body::CallbackRequest(proto::CallbackRequest {
                callback_id: callback_id.as_bytes().to_vec(),
                args: Some(args),
            })),
        };
        if self.sender.send(frame).is_err() {
            self.take(request_id);
            return Err(Callbacks::closed_error());
        }
        before_wait();
        let mut outcome = waiter.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = outcome.take() {
                return outcome;
            }
            outcome = waiter
                .ready
                .wait(outcome)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn take(&self, request_id: u64) -> Option<Arc<Waiter>> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.remove(&request_id)
    }

    /// Delivers the BEAM's answer to the waiting thread.
    pub fn deliver(&self, request_id: u64, result: proto::CallbackResult) {
        use proto::callback_result::Outcome as Wire;
        let outcome = match result.outcome {
            Some(Wire::Value(value)) => Ok(value),
            Some(Wire::Error(error)) => Err(Box::new(error)),
            None => Err(Box::new(callback::failed(
                "the callback's answer was empty",
            ))),
        };
        if let Some(waiter) = self.take(request_id) {
            let mut slot = waiter.outcome.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(outcome);
            waiter.ready.notify_all();
        }
    }

    /// Tells the BEAM a callback can be forgotten (its callable is gone).
    pub fn release(&self, callback_id: CallbackId) {
        // If the connection is gone, so is the BEAM's interest in the function.
        let _ = self.sender.send(Frame {
            request_id: 0,
            body: Some(Body::Release(proto::Release {
                callback_ids: vec![callback_id.as_bytes().to_vec()],
                ..proto::Release::default()
            })),
        });
    }

    /// The connection ended: every waiting request fails, later ones fail at once.
    pub fn close(&self) {
        let waiters: Vec<Arc<Waiter>> = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::Release);
            waiters.drain().map(|(_, w)| w).collect()
        };
        for waiter in waiters {
            let mut slot = waiter.outcome.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(Err(Callbacks::closed_error()));
            waiter.ready.notify_all();
        }
    }
}

/// One connection's inbound frames, routed one at a time: call frames are registered in
/// flight and handed back to run, cancels, credit and releases go to what they steer,
/// callback results to the connection's [`Callbacks`]; anything else is answered with an
/// error frame. [`route`] drives it from a stream; the worker's reading threads drive it
/// from the socket.
#[derive(Debug)]
pub struct Router {
    in_flight: Arc<InFlight>,
    assembler: Assembler,
    reply: ReplySender,
}

impl Router {
    /// A router answering on `reply`, assembling payloads that come in parts with
    /// `assembler`.
    pub fn new(reply: ReplySender, assembler: Assembler) -> Router {
        Router {
            in_flight: Arc::new(InFlight::default()),
            assembler,
            reply,
        }
    }

    /// Routes one frame; a call frame comes back as the call to run (every call must be
    /// answered, and then leave its `in_flight`).
    pub fn route(
        &mut self,
        frame: Frame,
        executor: &dyn Executor,
        callbacks: &Callbacks,
    ) -> Option<IncomingCall> {
        let frame = match self.assembler.push(frame) {
            Ok(Some(frame)) => frame,
            // A part: kept until its frame arrives.
            Ok(None) => return None,
            Err(err) => {
                self.send_error(err.request_id, Kind::Encoding, err.message);
                return None;
            }
        };
        let arrived = Instant::now();
        let request_id = frame.request_id;
        match frame.body {
            Some(Body::Call(call)) => match self.in_flight.register(request_id) {
                Some(control) => {
                    return Some(IncomingCall {
                        request_id,
                        call,
                        arrived,
                        control,
                        in_flight: Arc::clone(&self.in_flight),
                        reply: self.reply.clone(),
                    })
                }
                None => self.send_error(
                    request_id,
                    Kind::BadRequest,
                    format!("request id {request_id} is already in flight"),
                ),
            },
            Some(Body::Cancel(_)) => {
                self.assembler.drop_pending(request_id);
                if let Some(control) = self.in_flight.cancel(request_id) {
                    executor.interrupt(&control);
                }
            }
            Some(Body::Release(release)) => executor.release(release),
            Some(Body::Credit(credit)) => self.in_flight.credit(request_id, credit.chunks),
            Some(Body::CallbackResult(result)) => callbacks.deliver(request_id, result),
            Some(other) => self.send_error(
                request_id,
                Kind::BadRequest,
                format!(
                    "a {} frame is not expected from the client",
                    frame_kind(&other)
                ),
            ),
            None => self.send_error(
                request_id,
                Kind::BadRequest,
                "a frame without a body".into(),
            ),
        }
        None
    }

    /// The client's frames ended: every call still in flight is cancelled (so streams
    /// waiting for credit end) and every callback waiting for the BEAM fails.
    pub fn close(&self, callbacks: &Callbacks) {
        self.in_flight.cancel_all();
        callbacks.close();
    }

    fn send_error(&self, request_id: u64, kind: Kind, message: String) {
        let _ = self.reply.send(error_frame(request_id, kind, message));
    }
}

/// Reads one connection's frames until the client ends its stream, routing each with a
/// [`Router`]: calls go to `executor`. When the stream ends, the router closes.
pub async fn route<S>(
    mut inbound: S,
    executor: &dyn Executor,
    callbacks: &Callbacks,
    reply: ReplySender,
    assembler: Assembler,
) where
    S: Stream<Item = Result<Frame, Status>> + Unpin,
{
    let mut router = Router::new(reply, assembler);
    // An error here means the client went away: nothing to answer, stop reading.
    while let Some(Ok(frame)) = inbound.next().await {
        if let Some(call) = router.route(frame, executor, callbacks) {
            executor.submit(call);
        }
    }
    router.close(callbacks);
}

/// A frame body's name, for messages.
pub fn frame_kind(body: &Body) -> &'static str {
    match body {
        Body::Call(_) => "call",
        Body::Result(_) => "result",
        Body::Error(_) => "error",
        Body::Chunk(_) => "chunk",
        Body::Cancel(_) => "cancel",
        Body::Release(_) => "release",
        Body::Credit(_) => "credit",
        Body::CallbackRequest(_) => "callback request",
        Body::CallbackResult(_) => "callback result",
        Body::Part(_) => "part",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// Records what it was given; answers nothing.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<IncomingCall>>,
        releases: Mutex<Vec<proto::Release>>,
        interrupted: Mutex<Vec<u64>>,
    }

    impl Executor for Recorder {
        fn submit(&self, call: IncomingCall) {
            self.calls.lock().unwrap().push(call);
        }
        fn release(&self, release: proto::Release) {
            self.releases.lock().unwrap().push(release);
        }
        fn interrupt(&self, control: &Arc<Control>) {
            self.interrupted.lock().unwrap().push(control.runner());
        }
    }

    fn frame(request_id: u64, body: Body) -> Result<Frame, Status> {
        Ok(Frame {
            request_id,
            body: Some(body),
        })
    }

    fn call() -> Body {
        Body::Call(proto::Call {
            target: "math.sqrt".into(),
            ..proto::Call::default()
        })
    }

    async fn route_all(frames: Vec<Result<Frame, Status>>) -> (Recorder, Vec<Frame>) {
        let recorder = Recorder::default();
        let (reply, mut replies) = mpsc::unbounded_channel();
        let reply = ReplySender::channel(reply);
        let callbacks = Callbacks::new(reply.clone());
        route(
            tokio_stream::iter(frames),
            &recorder,
            &callbacks,
            reply,
            Assembler::new(1 << 20),
        )
        .await;
        let mut sent = Vec::new();
        while let Ok(Ok(frame)) = replies.try_recv() {
            sent.push(frame);
        }
        (recorder, sent)
    }

    fn error_kind(frame: &Frame) -> Option<i32> {
        match &frame.body {
            Some(Body::Error(e)) => Some(e.kind),
            _ => None,
        }
    }

    #[tokio::test]
    async fn calls_go_to_the_executor_and_a_duplicate_id_is_refused() {
        let (recorder, sent) = route_all(vec![frame(1, call()), frame(1, call())]).await;
        let calls = recorder.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].request_id, 1);
        assert_eq!(sent.len(), 1);
        assert_eq!(error_kind(&sent[0]), Some(Kind::BadRequest as i32));
        // The stream ended: the call still in flight was cancelled.
        assert!(calls[0].control.is_cancelled());
    }

    #[tokio::test]
    async fn cancel_credit_and_release_reach_what_they_steer() {
        let (recorder, sent) = route_all(vec![
            frame(1, call()),
            frame(1, Body::Credit(proto::Credit { chunks: 3 })),
            frame(2, Body::Cancel(proto::Cancel::default())),
            frame(1, Body::Cancel(proto::Cancel::default())),
            frame(0, Body::Release(proto::Release::default())),
        ])
        .await;
        assert!(sent.is_empty());
        let calls = recorder.calls.lock().unwrap();
        let control = &calls[0].control;
        assert!(control.is_cancelled());
        // A cancelled stream takes no more chunks, even with credit given before.
        assert!(!control.acquire_credit());
        assert_eq!(recorder.interrupted.lock().unwrap().len(), 1);
        assert_eq!(recorder.releases.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn frames_the_worker_does_not_take_are_answered_with_errors() {
        let (_, sent) = route_all(vec![
            frame(5, Body::Chunk(proto::Chunk::default())),
            Ok(Frame {
                request_id: 6,
                body: None,
            }),
        ])
        .await;
        assert_eq!(sent.len(), 2);
        assert!(sent
            .iter()
            .all(|f| error_kind(f) == Some(Kind::BadRequest as i32)));
    }

    #[test]
    fn credit_is_taken_one_chunk_at_a_time() {
        let control = Control::default();
        control.add_credit(2);
        assert!(control.acquire_credit());
        assert!(control.acquire_credit());
        control.cancel();
        assert!(!control.acquire_credit());
    }

    #[test]
    fn a_call_past_its_deadline_is_refused() {
        let (reply, _replies) = tokio::sync::mpsc::unbounded_channel();
        let reply = ReplySender::channel(reply);
        let incoming = IncomingCall {
            request_id: 1,
            call: proto::Call {
                timeout_ms: 1,
                ..proto::Call::default()
            },
            arrived: Instant::now() - Duration::from_millis(5),
            control: Arc::new(Control::default()),
            in_flight: Arc::new(InFlight::default()),
            reply,
        };
        assert!(incoming.refusal().unwrap().contains("deadline of 1 ms"));
    }

    #[test]
    fn callbacks_fail_once_the_connection_is_closed() {
        let (reply, _replies) = tokio::sync::mpsc::unbounded_channel();
        let callbacks = Callbacks::new(ReplySender::channel(reply));
        callbacks.close();
        let outcome = callbacks.request(CallbackId::random(), proto::Payload::default(), || {});
        assert_eq!(
            outcome.unwrap_err().message,
            "the connection to the BEAM is gone"
        );
    }

    #[test]
    fn a_callback_answer_reaches_its_waiter() {
        let (reply, mut replies) = tokio::sync::mpsc::unbounded_channel();
        let callbacks = Arc::new(Callbacks::new(ReplySender::channel(reply)));
        let id = CallbackId::random();
        let waiting = {
            let callbacks = Arc::clone(&callbacks);
            std::thread::spawn(move || callbacks.request(id, proto::Payload::default(), || {}))
        };
        let request = loop {
            if let Ok(Ok(frame)) = replies.try_recv() {
                break frame;
            }
            std::thread::yield_now();
        };
        assert!(matches!(
            request.body,
            Some(Body::CallbackRequest(ref r)) if r.callback_id == id.as_bytes()
        ));
        callbacks.deliver(
            request.request_id,
            proto::CallbackResult {
                outcome: Some(proto::callback_result::Outcome::Value(
                    proto::Payload::default(),
                )),
            },
        );
        assert!(waiting.join().unwrap().is_ok());
    }
}
