// Socket options every connection of the HTTP/WebSocket layer gets (server and clients alike).
#pragma once

#include <boost/asio/ip/tcp.hpp>

namespace podgate::http {

// Small frames (a prompt, an exit status, a WebSocket pong) leave at once: with Nagle's
// algorithm they waited for the peer's delayed ACK, up to 40 ms per exchange. A socket that
// refuses the option still works, only slower, so the error is not reported.
inline void SendSmallFramesAtOnce(boost::asio::ip::tcp::socket& socket) {
  boost::system::error_code ignored;
  socket.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
}

}  // namespace podgate::http
