#include "access_review.h"

#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"

namespace podgate::kubesim {
namespace {

using nlohmann::json;

std::string Str(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// One protobuf message's fields: (field number, wire type, varint value or bytes).
struct Field {
  int number = 0;
  int wire_type = 0;
  uint64_t varint = 0;
  std::string_view bytes;
};

absl::StatusOr<uint64_t> Varint(std::string_view& in) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) {
      return absl::InvalidArgumentError("truncated protobuf varint");
    }
    const uint8_t byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      return value;
    }
  }
  return absl::InvalidArgumentError("protobuf varint too long");
}

absl::StatusOr<std::vector<Field>> Fields(std::string_view in) {
  std::vector<Field> out;
  while (!in.empty()) {
    absl::StatusOr<uint64_t> key = Varint(in);
    if (!key.ok()) {
      return key.status();
    }
    Field f;
    f.number = static_cast<int>(*key >> 3);
    f.wire_type = static_cast<int>(*key & 7);
    if (f.wire_type == 0) {
      absl::StatusOr<uint64_t> v = Varint(in);
      if (!v.ok()) {
        return v.status();
      }
      f.varint = *v;
    } else if (f.wire_type == 2) {
      absl::StatusOr<uint64_t> len = Varint(in);
      if (!len.ok()) {
        return len.status();
      }
      if (*len > in.size()) {
        return absl::InvalidArgumentError("truncated protobuf field");
      }
      f.bytes = in.substr(0, *len);
      in.remove_prefix(*len);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("protobuf wire type ", f.wire_type, " is not used by access reviews"));
    }
    out.push_back(f);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> AccessReviewProtobufToJson(std::string_view body, bool self) {
  const char* kind = self ? "SelfSubjectAccessReview" : "SubjectAccessReview";
  static constexpr std::string_view kMagic("k8s\0", 4);
  if (body.substr(0, 4) != kMagic) {
    return absl::InvalidArgumentError("not a Kubernetes protobuf body (no k8s magic)");
  }
  // runtime.Unknown: typeMeta (1) {apiVersion (1), kind (2)}, raw (2).
  absl::StatusOr<std::vector<Field>> envelope = Fields(body.substr(4));
  if (!envelope.ok()) {
    return envelope.status();
  }
  std::string api_version;
  std::string got_kind;
  std::string_view raw;
  for (const Field& f : *envelope) {
    if (f.number == 1 && f.wire_type == 2) {
      absl::StatusOr<std::vector<Field>> type_meta = Fields(f.bytes);
      if (!type_meta.ok()) {
        return type_meta.status();
      }
      for (const Field& t : *type_meta) {
        if (t.wire_type == 2 && t.number == 1) {
          api_version = std::string(t.bytes);
        } else if (t.wire_type == 2 && t.number == 2) {
          got_kind = std::string(t.bytes);
        }
      }
    } else if (f.number == 2 && f.wire_type == 2) {
      raw = f.bytes;
    }
  }
  if (api_version != "authorization.k8s.io/v1" || got_kind != kind) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected kind ", kind, " of apiVersion authorization.k8s.io/v1"));
  }
  json review = {{"kind", kind}, {"apiVersion", api_version}, {"spec", json::object()}};
  // The object: metadata (1), spec (2), status (3).
  absl::StatusOr<std::vector<Field>> object = Fields(raw);
  if (!object.ok()) {
    return object.status();
  }
  for (const Field& f : *object) {
    if (f.number != 2 || f.wire_type != 2) {
      continue;
    }
    // Spec: resourceAttributes (1), nonResourceAttributes (2); a SubjectAccessReviewSpec also
    // user (3), groups (4), uid (6).
    absl::StatusOr<std::vector<Field>> spec = Fields(f.bytes);
    if (!spec.ok()) {
      return spec.status();
    }
    json& out = review["spec"];
    for (const Field& s : *spec) {
      if (s.wire_type != 2) {
        continue;
      }
      if (s.number == 1) {
        absl::StatusOr<std::vector<Field>> attrs = Fields(s.bytes);
        if (!attrs.ok()) {
          return attrs.status();
        }
        static const char* const kNames[] = {nullptr,   "namespace", "verb",        "group",
                                             "version", "resource",  "subresource", "name"};
        json a = json::object();
        for (const Field& x : *attrs) {
          if (x.wire_type == 2 && x.number >= 1 && x.number <= 7) {
            a[kNames[x.number]] = std::string(x.bytes);
          }
        }
        out["resourceAttributes"] = a;
      } else if (s.number == 2) {
        out["nonResourceAttributes"] = json::object();
      } else if (!self && s.number == 3) {
        out["user"] = std::string(s.bytes);
      } else if (!self && s.number == 4) {
        out["groups"].push_back(std::string(s.bytes));
      } else if (!self && s.number == 6) {
        out["uid"] = std::string(s.bytes);
      }
    }
  }
  return review.dump();
}

absl::StatusOr<std::string> AnswerAccessReview(const Cluster& cluster, const UserInfo& caller,
                                               bool self, const std::string& body) {
  const char* kind = self ? "SelfSubjectAccessReview" : "SubjectAccessReview";
  json review = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (review.is_discarded() || !review.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("the body is not a JSON ", kind));
  }
  if (Str(review, "kind") != kind || Str(review, "apiVersion") != "authorization.k8s.io/v1") {
    return absl::InvalidArgumentError(
        absl::StrCat("expected kind ", kind, " of apiVersion authorization.k8s.io/v1"));
  }
  auto spec = review.find("spec");
  if (spec == review.end() || !spec->is_object()) {
    return absl::FailedPreconditionError(absl::StrCat(kind, " needs a spec"));
  }
  auto attrs = spec->find("resourceAttributes");
  if (attrs == spec->end() || !attrs->is_object()) {
    return absl::FailedPreconditionError(
        absl::StrCat(kind,
                     ".authorization.k8s.io is invalid: spec.resourceAttributes: "
                     "Invalid value: null: exactly one of nonResourceAttributes or "
                     "resourceAttributes must be specified (kubesim reviews resources "
                     "only)"));
  }
  UserInfo subject = caller;
  if (!self) {
    subject = UserInfo{Str(*spec, "user"), Str(*spec, "uid"), {}, {}};
    if (auto groups = spec->find("groups"); groups != spec->end() && groups->is_array()) {
      for (const json& g : *groups) {
        if (g.is_string()) {
          subject.groups.push_back(g.get<std::string>());
        }
      }
    }
    if (subject.name.empty() && subject.groups.empty()) {
      return absl::FailedPreconditionError(
          "SubjectAccessReview.authorization.k8s.io is invalid: spec.user: Invalid value: \"\": "
          "at least one of user or group must be specified");
    }
  }
  Attributes a;
  a.verb = Str(*attrs, "verb");
  a.api_group = Str(*attrs, "group");
  a.resource = Str(*attrs, "resource");
  a.subresource = Str(*attrs, "subresource");
  a.namespace_name = Str(*attrs, "namespace");
  a.name = Str(*attrs, "name");
  const bool allowed = cluster.Authorize(subject, a);
  review["metadata"] = {{"creationTimestamp", nullptr}};
  review["status"] = {{"allowed", allowed}};
  if (allowed) {
    review["status"]["reason"] = "allowed by kubesim's access list or RBAC";
  }
  return review.dump();
}

}  // namespace podgate::kubesim
