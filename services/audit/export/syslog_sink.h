// The syslog export sink: RFC 5424 messages (syslog_format.h) over one persistent TCP connection
// with octet-counting framing (RFC 6587 3.4.1: "MSG-LEN SP SYSLOG-MSG"), or over TLS 1.2+
// (RFC 5425, same framing). Built by MakeSyslogSink (sink.h), which checks every setting.
//
// Syslog over TCP has no acknowledgements, so "delivered" is defined as far as TCP can tell:
//  1. Deliver writes the whole batch and then waits (within the timeout) until the peer's TCP
//     stack has acknowledged every byte (the socket's send queue, SIOCOUTQ, is empty while the
//     connection is still established). Only then does it return OK, and only then does the
//     exporter advance its cursor.
//  2. Bytes acknowledged by the receiver's kernel may still sit unread in its socket buffer. If
//     the receiver restarts then, they are gone. So after a connection breaks (a write or wait
//     error, or the peer having closed it between batches), the next connection first re-sends
//     a replay window: the last kSyslogReplayWindowBytes of messages delivered OK on earlier
//     connections (whole messages, newest kept). Duplicates are possible and expected.
//  3. The sink declares that window (UnconfirmedWindowBytes), so the exporter keeps the stored
//     cursor a window behind what was delivered: after audit restarts or another replica takes
//     the lease, the window is re-sent from the store.
// What can still be lost: messages the receiver had read into its own memory (an rsyslog main
// or action queue without a disk queue) when it crashed, and acknowledged bytes older than the
// replay window that it had not read yet. RELP (which acknowledges per message) is not
// implemented; receivers needing stronger guarantees use the webhook sink or a disk-assisted
// queue at the receiver.
#pragma once

#include <cstddef>

namespace podgate::audit::exporting {

// The replay window re-sent after a broken connection (bytes of framed messages).
inline constexpr size_t kSyslogReplayWindowBytes = 1024 * 1024;

}  // namespace podgate::audit::exporting
