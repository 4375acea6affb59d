#include "crypto/openssl_ptr.h"

#include "gtest/gtest.h"

namespace podgate::crypto {
namespace {

int frees = 0;

// Counts the BIO_free calls that reach the BIO (BIO_CB_FREE).
long CountFree(BIO*, int oper, const char*, size_t, int, long, int ret, size_t*) {
  if (oper == BIO_CB_FREE) {
    ++frees;
  }
  return ret;
}

TEST(OpenSslPtrTest, ThePointerFreesItsObjectOnce) {
  frees = 0;
  {
    BioPtr bio(BIO_new(BIO_s_mem()));
    ASSERT_NE(bio, nullptr);
    BIO_set_callback_ex(bio.get(), CountFree);
    EXPECT_EQ(frees, 0);
  }
  EXPECT_EQ(frees, 1);
}

TEST(OpenSslPtrTest, ReleaseHandsOwnershipOver) {
  frees = 0;
  BIO* raw = nullptr;
  {
    BioPtr bio(BIO_new(BIO_s_mem()));
    BIO_set_callback_ex(bio.get(), CountFree);
    raw = bio.release();
  }
  EXPECT_EQ(frees, 0);
  BioPtr again(raw);
  again.reset();
  EXPECT_EQ(frees, 1);
}

TEST(OpenSslPtrTest, EveryAliasHoldsItsType) {
  // Each alias owns a real object of its type; LeakSanitizer (the sanitizer build) fails the
  // test if one of them does not free it.
  EXPECT_NE(BignumPtr(BN_new()), nullptr);
  EXPECT_NE(EcdsaSigPtr(ECDSA_SIG_new()), nullptr);
  EXPECT_NE(EvpMdCtxPtr(EVP_MD_CTX_new()), nullptr);
  EXPECT_NE(EvpPkeyCtxPtr(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr)), nullptr);
  EXPECT_NE(EvpPkeyPtr(EVP_EC_gen("P-256")), nullptr);
  EXPECT_NE(OsslParamBldPtr(OSSL_PARAM_BLD_new()), nullptr);
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  EXPECT_NE(OsslParamPtr(OSSL_PARAM_BLD_to_param(bld.get())), nullptr);
  EXPECT_NE(X509Ptr(X509_new()), nullptr);
}

TEST(OpenSslPtrTest, SharedKeysFreeWithTheLastOwner) {
  std::shared_ptr<EVP_PKEY> first = SharePkey(EVP_EC_gen("P-256"));
  ASSERT_NE(first, nullptr);
  std::shared_ptr<EVP_PKEY> second = first;
  first.reset();
  // The key is still usable through the other owner.
  EXPECT_EQ(EVP_PKEY_get_bits(second.get()), 256);
  EXPECT_EQ(SharePkey(nullptr), nullptr);
}

}  // namespace
}  // namespace podgate::crypto
