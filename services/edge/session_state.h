// A BrowserSession's state, explicit: where its browser side is in its life (SessionState),
// where its exec stream is (ExecPhase), which pool holds its connection slot (SlotPool), and
// what its one exec read is doing (ExecRead). Every change goes through the session's Enter
// functions, which check it against the tables here; an invalid one is logged and not made.
//
//   kUpgrading ──► kAuthenticating ──► kOpening ──► kOpen ──► kDraining
//        │                │  (credential)  │ (ready)  │ (shutdown, a command runs)
//        │                └──► kLoginRefused (seed: a refused credential) ──► kClosing / kClosed
//        └────────────────┴────────────────┴──────────┴──────────┴──► kClosing ──► kBrowserGone ──►
//        kClosed
//   (any state from kAuthenticating on may also go straight to kBrowserGone or kClosed when the
//    browser leaves)
//
//   exec:  kNone ──► kStreaming ──► kEnding ──► kHalfClosed
//                        └────────────┴────────────┴──► kFinished ──► kDone
#pragma once

namespace podgate::edge {

// In lifecycle order: a later state never leads back to an earlier one, so `state >= kClosing`
// reads "closing or gone".
enum class SessionState {
  kUpgrading,       // made by the handshake; the WebSocket is not open yet (OnOpen)
  kAuthenticating,  // open without a credential: the first message must bring one in time
  kLoginRefused,    // seed only: its first-message credential was refused (audited) and, as the
                    // seed's consumer does, nothing said yet; the next message or the
                    // authentication deadline gets "Please login first" and the close (1008)
  kOpening,         // authenticated; exec's Session stream started, `ready` not yet seen
  kOpen,            // exec is ready: commands run
  kDraining,        // edge is shutting down while a command runs: it may finish, nothing new
                    // starts, and the session closes (1001) right after its result
  kClosing,         // a close frame is queued towards the browser; exec is asked to end
  kBrowserGone,     // the WebSocket is gone; the exec stream still finishes (bounded)
  kClosed,          // the WebSocket is gone and nothing is left to wait for
};

enum class ExecPhase {
  kNone,        // not started: no credential yet
  kStreaming,   // requests and responses flow
  kEnding,      // `close` queued; the half-close follows once the queue has drained
  kHalfClosed,  // the half-close is sent; exec's last messages are still read
  kFinished,    // a read failed: exec has ended the stream; released once no operation is out
  kDone,        // the RPC is over (OnExecDone)
};

// Which replica-wide pool holds the connection's slot (Limits).
enum class SlotPool {
  kUnauthenticated,  // Limits::AcquireUnauthenticated: waiting for a first-message credential
  kConnections,      // Limits::AcquireConnection (and the user's slot)
  kReleased,         // given back
};

// The one exec read (flow control towards the browser: one read at a time).
enum class ExecRead {
  kIdle,             // none out, none wanted
  kInFlight,         // a read is out
  kWaitsForBrowser,  // the browser's queue is full: the next read waits for OnWritable
};

// The names logs use ("open", "half_closed", "connections").
const char* StateName(SessionState state);
const char* StateName(ExecPhase phase);
const char* StateName(SlotPool pool);

// Whether a session may go from `from` to `to` (staying is not a transition).
bool TransitionAllowed(SessionState from, SessionState to);
bool TransitionAllowed(ExecPhase from, ExecPhase to);
bool TransitionAllowed(SlotPool from, SlotPool to);

}  // namespace podgate::edge
