#include "support/oidc_provider.h"

#include <csignal>
#include <cstdio>
#include <fstream>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "http/url.h"
#include "support/test_pki.h"

#ifndef PODGATE_OIDC_PROVIDER_DIR
#error "PODGATE_OIDC_PROVIDER_DIR must name tools/oidc-provider"
#endif

namespace podgate::testing {

namespace {

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  return out ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

// scheme://host:port of a URL.
std::string Origin(const http::HttpUrl& url) {
  http::HttpUrl o = url;
  o.target = "/";
  std::string s = o.ToString();
  s.pop_back();
  return s;
}

// A form's action against the page's origin.
std::string Resolve(const std::string& origin, const std::string& action) {
  return absl::StartsWith(action, "http://") || absl::StartsWith(action, "https://")
             ? action
             : absl::StrCat(origin, action);
}

}  // namespace

absl::StatusOr<nlohmann::json> OidcProvider::NewRsaKey() {
  FILE* p = popen(
      "node -e 'const c=require(\"crypto\");"
      "const {privateKey}=c.generateKeyPairSync(\"rsa\",{modulusLength:2048});"
      "console.log(JSON.stringify({...privateKey.export({format:\"jwk\"}),"
      "kid:c.randomUUID(),alg:\"RS256\",use:\"sig\"}))'",
      "r");
  if (p == nullptr) {
    return absl::InternalError("cannot run node");
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  if (pclose(p) != 0) {
    return absl::InternalError("node failed to generate a key");
  }
  nlohmann::json key = nlohmann::json::parse(out, nullptr, false);
  if (key.is_discarded()) {
    return absl::InternalError("node printed no key");
  }
  return key;
}

absl::StatusOr<std::string> OidcProvider::Sign(const nlohmann::json& private_jwk,
                                               const nlohmann::json& claims) {
  // The key and claims go through the environment: no shell, no file.
  constexpr char kScript[] =
      "const c=require('crypto');const jwk=JSON.parse(process.env.PODGATE_JWK);"
      "const b=(o)=>Buffer.from(JSON.stringify(o)).toString('base64url');"
      "const input=b({alg:'RS256',typ:'JWT',kid:jwk.kid})+'.'+"
      "b(JSON.parse(process.env.PODGATE_CLAIMS));"
      "const key=c.createPrivateKey({key:jwk,format:'jwk'});"
      "console.error(input+'.'+c.sign('sha256',Buffer.from(input),key).toString('base64url'));";
  absl::StatusOr<std::unique_ptr<Subprocess>> node =
      Subprocess::Start("/usr/bin/env", {"node", "-e", kScript},
                        {{"PODGATE_JWK", private_jwk.dump()}, {"PODGATE_CLAIMS", claims.dump()}});
  if (!node.ok()) {
    return node.status();
  }
  absl::StatusOr<int> code = (*node)->WaitExit(absl::Seconds(30));
  const std::vector<std::string> lines = (*node)->Lines();
  if (!code.ok() || *code != 0 || lines.size() != 1) {
    return absl::InternalError(
        absl::StrCat("node could not sign the token: ", absl::StrJoin(lines, "\n")));
  }
  return lines[0];
}

absl::StatusOr<std::unique_ptr<OidcProvider>> OidcProvider::Start(nlohmann::json config, int port) {
  auto provider = std::unique_ptr<OidcProvider>(new OidcProvider());
  const std::string dir = MakeTempDir("podgate-oidc");
  if (!config.contains("keys")) {
    config["keys"] = absl::StrCat(dir, "/keys.json");
  }
  provider->keys_file_ = config["keys"].get<std::string>();
  const std::string config_file = absl::StrCat(dir, "/provider.json");
  if (absl::Status s = WriteFile(config_file, config.dump()); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
      "/usr/bin/env", {"node", absl::StrCat(PODGATE_OIDC_PROVIDER_DIR, "/provider.mjs"),
                       absl::StrCat("--port=", port), absl::StrCat("--config=", config_file)});
  if (!process.ok()) {
    return process.status();
  }
  provider->process_ = *std::move(process);
  absl::StatusOr<std::string> line =
      provider->process_->WaitForLine("\"listening\"", absl::Seconds(60));
  if (!line.ok()) {
    return absl::UnavailableError(absl::StrCat("the OpenID provider did not start: ",
                                               absl::StrJoin(provider->process_->Lines(), "\n")));
  }
  const nlohmann::json ready = nlohmann::json::parse(*line, nullptr, false);
  if (ready.is_discarded() || !ready.contains("issuer")) {
    return absl::InternalError(absl::StrCat("unexpected provider line: ", *line));
  }
  provider->issuer_ = ready["issuer"].get<std::string>();
  return provider;
}

absl::Status OidcProvider::Rotate(const nlohmann::json& jwks) {
  if (absl::Status s = WriteFile(keys_file_, jwks.dump()); !s.ok()) {
    return s;
  }
  const size_t before = process_->Lines().size();
  process_->Signal(SIGHUP);
  for (int i = 0; i < 200; ++i) {
    std::vector<std::string> lines = process_->Lines();
    for (size_t j = before; j < lines.size(); ++j) {
      if (absl::StrContains(lines[j], "\"rotated\"")) {
        return absl::OkStatus();
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError("the provider did not confirm the rotation");
}

absl::StatusOr<std::string> Browser::Follow(std::string method, std::string url, std::string body,
                                            std::string* page) {
  absl::StatusOr<http::HttpUrl> start = http::ParseHttpUrl(url);
  if (!start.ok()) {
    return start.status();
  }
  const std::string origin = Origin(*start);
  for (int hop = 0; hop < 20; ++hop) {
    absl::StatusOr<http::HttpUrl> at = http::ParseHttpUrl(url);
    if (!at.ok()) {
      return at.status();
    }
    if (Origin(*at) != origin) {
      return url;  // left the provider: the client's redirect URI
    }
    http::ClientOptions options;
    options.host = at->host;
    options.port = at->port;
    options.tls = at->tls;
    options.ca_file = ca_file_;
    options.timeout = absl::Seconds(20);
    std::vector<std::string> jar;
    for (const auto& [name, value] : cookies_) {
      jar.push_back(absl::StrCat(name, "=", value));
    }
    if (!jar.empty()) {
      options.headers.emplace_back("Cookie", absl::StrJoin(jar, "; "));
    }
    if (method == "POST") {
      options.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    }
    absl::StatusOr<http::ClientResponse> r = http::Fetch(options, method, at->target, body);
    if (!r.ok()) {
      return r.status();
    }
    for (const auto& [k, v] : r->headers) {
      if (absl::EqualsIgnoreCase(k, "Set-Cookie")) {
        absl::string_view pair = absl::string_view(v).substr(0, v.find(';'));
        const size_t eq = pair.find('=');
        if (eq != absl::string_view::npos) {
          const std::string name(pair.substr(0, eq));
          const std::string value(pair.substr(eq + 1));
          if (value.empty() || absl::StrContains(absl::AsciiStrToLower(v), "max-age=0") ||
              absl::StrContains(v, "expires=Thu, 01 Jan 1970")) {
            cookies_.erase(name);
          } else {
            cookies_[name] = value;
          }
        }
      }
    }
    if (r->status >= 300 && r->status < 400) {
      std::string location = r->Header("Location");
      if (location.empty()) {
        return absl::InternalError("a redirect without Location");
      }
      url = absl::StartsWith(location, "/") ? absl::StrCat(origin, location) : location;
      method = "GET";
      body.clear();
      continue;
    }
    if (page != nullptr) {
      *page = r->body;
    }
    if (r->status != 200) {
      return absl::FailedPreconditionError(
          absl::StrCat("the provider answered ", r->status, ": ", r->body.substr(0, 300)));
    }
    return std::string();
  }
  return absl::InternalError("too many redirects");
}

absl::StatusOr<std::string> Browser::Open(const std::string& url, std::string* page) {
  return Follow("GET", url, "", page);
}

absl::StatusOr<std::string> Browser::Post(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& form,
    std::string* page) {
  return Follow("POST", url, http::EncodeQuery(form), page);
}

namespace {

// The action and hidden inputs of the first form on a page.
struct Form {
  std::string action;
  std::vector<std::pair<std::string, std::string>> fields;
};

Form FirstForm(const std::string& page) {
  Form form;
  std::smatch m;
  if (std::regex_search(page, m, std::regex(R"re(<form[^>]*action="([^"]*)")re"))) {
    form.action = m[1];
  }
  std::regex hidden(R"re(<input[^>]*type="hidden"[^>]*name="([^"]*)"[^>]*value="([^"]*)")re");
  for (auto it = std::sregex_iterator(page.begin(), page.end(), hidden);
       it != std::sregex_iterator(); ++it) {
    form.fields.emplace_back((*it)[1], (*it)[2]);
  }
  return form;
}

}  // namespace

absl::StatusOr<std::string> Browser::SignIn(const std::string& url, const std::string& username,
                                            const std::string& password, std::string* page) {
  std::string login;
  absl::StatusOr<std::string> at = Open(url, &login);
  if (!at.ok() || !at->empty()) {
    return at;  // an error, or the provider answered without asking (already signed in)
  }
  Form form = FirstForm(login);
  if (form.action.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("no login form: ", login.substr(0, 300)));
  }
  absl::StatusOr<http::HttpUrl> base = http::ParseHttpUrl(url);
  if (!base.ok()) {
    return base.status();
  }
  form.fields.emplace_back("username", username);
  form.fields.emplace_back("password", password);
  return Post(Resolve(Origin(*base), form.action), form.fields, page);
}

namespace {

// The device flow's code entry page (a form with an xsrf field) filled in: the confirmation
// page's form, whose hidden fields carry the code and "confirm".
absl::StatusOr<Form> EnterDeviceCode(Browser& browser, const http::HttpUrl& base,
                                     const std::string& verification_uri,
                                     const std::string& user_code) {
  const std::string origin = Origin(base);
  std::string page;
  absl::StatusOr<std::string> at = browser.Open(verification_uri, &page);
  if (!at.ok()) {
    return at.status();
  }
  Form form = FirstForm(page);
  form.fields.emplace_back("user_code", user_code);
  at = browser.Post(Resolve(origin, form.action.empty() ? base.target : form.action), form.fields,
                    &page);
  if (!at.ok()) {
    return at.status();
  }
  form = FirstForm(page);
  if (form.action.empty()) {
    form.action = base.target;
  }
  return form;
}

}  // namespace

absl::Status Browser::DenyDevice(const std::string& verification_uri,
                                 const std::string& user_code) {
  absl::StatusOr<http::HttpUrl> base = http::ParseHttpUrl(verification_uri);
  if (!base.ok()) {
    return base.status();
  }
  absl::StatusOr<Form> form = EnterDeviceCode(*this, *base, verification_uri, user_code);
  if (!form.ok()) {
    return form.status();
  }
  // The confirmation page's "[ Abort ]" button.
  form->fields.emplace_back("abort", "yes");
  std::string page;
  absl::StatusOr<std::string> at = Post(Resolve(Origin(*base), form->action), form->fields, &page);
  if (!at.ok() && !absl::StrContains(at.status().message(), "aborted")) {
    return at.status();
  }
  return absl::OkStatus();
}

absl::Status Browser::ApproveDevice(const std::string& verification_uri,
                                    const std::string& user_code, const std::string& username,
                                    const std::string& password) {
  absl::StatusOr<http::HttpUrl> base = http::ParseHttpUrl(verification_uri);
  if (!base.ok()) {
    return base.status();
  }
  const std::string origin = Origin(*base);
  absl::StatusOr<Form> confirm = EnterDeviceCode(*this, *base, verification_uri, user_code);
  if (!confirm.ok()) {
    return confirm.status();
  }
  Form form = *std::move(confirm);
  absl::StatusOr<std::string> at;
  std::string login;
  at = Post(Resolve(origin, form.action), form.fields, &login);
  if (!at.ok()) {
    return at.status();
  }
  Form login_form = FirstForm(login);
  if (login_form.action.empty() || !absl::StrContains(login_form.action, "/login")) {
    return absl::FailedPreconditionError(
        absl::StrCat("no login page after confirming the code: ", login.substr(0, 300)));
  }
  login_form.fields.emplace_back("username", username);
  login_form.fields.emplace_back("password", password);
  std::string done;
  at = Post(Resolve(origin, login_form.action), login_form.fields, &done);
  if (!at.ok()) {
    return at.status();
  }
  if (!absl::StrContains(absl::AsciiStrToLower(done), "success")) {
    return absl::FailedPreconditionError(
        absl::StrCat("the device was not approved: ", done.substr(0, 300)));
  }
  return absl::OkStatus();
}

}  // namespace podgate::testing
