// ThreadSanitizer annotations for the hand-over of gRPC callback tags (linked into every
// executable of a -DPODGATE_SANITIZE=thread build only, next to absl_mutex_tsan.cc).
//
// gRPC's callback API is header code compiled into podgate's binaries: a reactor arms a tag (its
// completion callback) on one thread, gRPC core carries the tag through its uninstrumented
// completion queue, and a gRPC thread runs it. TSan sees the arming and the running but not the
// queue between them, and reports the tag's fields as a race. This file annotates the two ends:
// grpc_call_start_batch (every batch, with its tag, goes through it) releases on the tag, and
// grpc_completion_queue_next (the loop of gRPC's callback threads, in libgrpc++) acquires on the
// tag it returns, before the tag runs. Both forward to libgrpc (dlsym(RTLD_NEXT)).
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

namespace {

void* Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "grpc_tsan: %s not found: %s\n", name, dlerror());
    std::abort();
  }
  return fn;
}

}  // namespace

extern "C" {

grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops, void* tag,
                                      void* reserved) {
  using Fn = grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);
  static const Fn real = reinterpret_cast<Fn>(Real("grpc_call_start_batch"));
  if (tag != nullptr) {
    __tsan_release(tag);
  }
  return real(call, ops, nops, tag, reserved);
}

grpc_event grpc_completion_queue_next(grpc_completion_queue* cq, gpr_timespec deadline,
                                      void* reserved) {
  using Fn = grpc_event (*)(grpc_completion_queue*, gpr_timespec, void*);
  static const Fn real = reinterpret_cast<Fn>(Real("grpc_completion_queue_next"));
  grpc_event event = real(cq, deadline, reserved);
  if (event.type == GRPC_OP_COMPLETE && event.tag != nullptr) {
    __tsan_acquire(event.tag);
  }
  return event;
}

}  // extern "C"
