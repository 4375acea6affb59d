// Owning pointers for OpenSSL objects, one way for every service: an alias a type, each freeing
// with the type's own OpenSSL function. Code that holds an OpenSSL object writes no deleter of
// its own.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include <memory>

namespace podgate::crypto {

// Frees with `kFree` (OpenSSL's free functions accept nullptr; unique_ptr never passes it).
template <auto kFree>
struct OpenSslFree {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};

using BioPtr = std::unique_ptr<BIO, OpenSslFree<&BIO_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpenSslFree<&BN_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OpenSslFree<&ECDSA_SIG_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpenSslFree<&EVP_MD_CTX_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpenSslFree<&EVP_PKEY_CTX_free>>;
using EvpPkeyDeleter = OpenSslFree<&EVP_PKEY_free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OpenSslFree<&OSSL_PARAM_BLD_free>>;
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, OpenSslFree<&OSSL_PARAM_free>>;
using X509Ptr = std::unique_ptr<X509, OpenSslFree<&X509_free>>;

// A key several owners share (a key set and its copies); null stays null.
inline std::shared_ptr<EVP_PKEY> SharePkey(EVP_PKEY* key) {
  if (key == nullptr) {
    return nullptr;
  }
  return std::shared_ptr<EVP_PKEY>(key, EvpPkeyDeleter());
}

}  // namespace podgate::crypto
