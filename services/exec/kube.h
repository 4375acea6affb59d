// What exec needs from the Kubernetes API, behind a small interface: pod lookups and exec
// streams. The real implementation (kube_client.h) speaks HTTPS and the WebSocket channel
// protocol to an API server; tests run it against kubesim.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace podgate::exec {

// Who the API server should see behind a call, by impersonation (Impersonate-User,
// Impersonate-Group, Impersonate-Extra-<key>): the end user the call is made for. An empty
// `user` means exec acts as itself (its own service account), which only exec's own
// housekeeping does once impersonation is on (impersonation.h).
struct KubeIdentity {
  std::string user;
  std::vector<std::string> groups;
  // (key, value) pairs, sent as `Impersonate-Extra-<key>: <value>`.
  std::vector<std::pair<std::string, std::string>> extra;
  // Impersonate-Uid when set.
  std::string uid;

  bool empty() const { return user.empty(); }
};

// A 403 the API server gave an impersonated end user: Kubernetes RBAC refuses that user what
// was asked (as opposed to refusing exec the impersonation itself, which is a configuration
// error: FAILED_PRECONDITION). Such a status is PERMISSION_DENIED and carries a payload that
// this tells apart from podgate's own refusals.
absl::Status KubernetesRbacDenial(std::string message);
bool IsKubernetesRbacDenial(const absl::Status& status);

// The user fields of a securityContext as the pod spec declares them (unset: not declared, or
// not of the right JSON type).
struct SecurityContextView {
  std::optional<int64_t> run_as_user;
  std::optional<bool> run_as_non_root;
};

struct ContainerView {
  std::string name;
  std::string image;
  // spec.containers[].securityContext
  SecurityContextView security;
};

struct PodView {
  std::string namespace_name;
  std::string name;
  // The pod's uid: the root guard caches per (pod uid, container).
  std::string uid;
  std::string phase;
  std::map<std::string, std::string> labels;
  std::vector<ContainerView> containers;
  // From the `kubectl.kubernetes.io/default-container` annotation; empty when absent.
  std::string default_container_annotation;
  // spec.securityContext (the pod-level defaults of its containers).
  SecurityContextView security;
};

// What the spec declares about `container`'s user: each field of the container's
// securityContext overrides the pod's, as the kubelet applies them.
SecurityContextView EffectiveSecurityContext(const PodView& pod, const std::string& container);

// Resolves the container a session targets: the named one, or the annotation's default, or
// the first. NOT_FOUND (with the pod's container names) when it does not exist.
absl::StatusOr<std::string> ResolveContainer(const PodView& pod, const std::string& requested);

struct ExecSpec {
  // Who the stream is opened for (empty: exec itself).
  KubeIdentity as;
  std::string namespace_name;
  std::string pod;
  std::string container;
  std::vector<std::string> argv;
  bool stdin = false;
  bool tty = false;
  uint32_t width = 0;
  uint32_t height = 0;
};

// How an exec stream ended.
struct ExecResult {
  // OK with exit_code set; or the failure (UNAVAILABLE: stream broke, an API error, ...).
  absl::Status status;
  int exit_code = 0;
  // The negotiated sub-protocol, e.g. "v5.channel.k8s.io".
  std::string protocol;
};

// Receives what an exec stream produces. Calls are serialized per stream.
class ExecObserver {
 public:
  virtual ~ExecObserver() = default;
  // The upgrade succeeded.
  virtual void OnStarted(const std::string& protocol) = 0;
  // Output on channel 1 (stdout) or 2 (stderr). The stream reads nothing more from the API
  // server until `resume` is called: that is how a slow consumer slows the pod down.
  virtual void OnOutput(int channel, std::string data, std::function<void()> resume) = 0;
  // The stream ended; the last call.
  virtual void OnExit(ExecResult result) = 0;
  // Stdin that WriteStdin reported as backed up has drained: more may be written.
  virtual void OnWritable() {}
};

// A running exec stream. Destroying it closes the WebSocket (the observer still gets OnExit).
// It may be destroyed from any thread, including from inside its observer's callbacks.
class ExecHandle {
 public:
  virtual ~ExecHandle() = default;
  // Queues stdin for the process. Returns false when the stream's queue is above its high
  // watermark: the caller should write nothing more until its observer's OnWritable (a writer
  // that ignores this is cut off at the hard limit, and the stream breaks).
  virtual bool WriteStdin(std::string data) = 0;
  // Half-closes stdin (v5 close frame); on v4 there is no way, so it is a no-op.
  virtual void CloseStdin() = 0;
  virtual void Resize(uint32_t width, uint32_t height) = 0;
  // Closes the WebSocket now. A non-TTY process in the container keeps running (as with any
  // kubelet): stopping it is the stop helper's job.
  virtual void Close() = 0;
};

// What an access review asks: may the subject `verb` the resource (authorization attributes
// as the API server's authorizer sees them)?
struct AccessQuery {
  std::string verb;
  std::string group;  // API group; "" for the core group
  std::string resource;
  std::string subresource;
  std::string namespace_name;  // "" for cluster scope
  std::string name;            // "" for any
};

class KubeApi {
 public:
  virtual ~KubeApi() = default;
  // `as`: the user the call is made for (empty: exec itself). A 403 for that user is a
  // KubernetesRbacDenial.
  virtual void GetPod(const KubeIdentity& as, const std::string& namespace_name,
                      const std::string& name,
                      std::function<void(absl::StatusOr<PodView>)> done) = 0;
  // Pods of one namespace, or of every namespace when `namespace_name` is empty.
  virtual void ListPods(const KubeIdentity& as, const std::string& namespace_name,
                        std::function<void(absl::StatusOr<std::vector<PodView>>)> done) = 0;
  // A SelfSubjectAccessReview made as `as` (exec itself when empty): whether the API server
  // would allow `query`. An error when it cannot say (unreachable, no such API, refused).
  virtual void ReviewAccess(const KubeIdentity& as, const AccessQuery& query,
                            std::function<void(absl::StatusOr<bool>)> done) = 0;
  // Starts an exec as `spec.as`. The stream owns `observer` until its OnExit has returned, and
  // holds it no longer: an observer refers back to its owner weakly.
  virtual std::unique_ptr<ExecHandle> Exec(const ExecSpec& spec,
                                           std::shared_ptr<ExecObserver> observer) = 0;
  // Whether the API server answers and says it is ready (exec's per-cluster health).
  virtual void CheckHealth(std::function<void(absl::Status)> done) = 0;
};

}  // namespace podgate::exec
