#include "src/tls/testcert.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>

EVP_PKEY *usc_testcert_key(void) { return EVP_EC_gen("P-256"); }

static bool add_extension(X509 *x, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  bool ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

X509 *usc_testcert_make(EVP_PKEY *key, const char *cn, X509 *issuer,
                        EVP_PKEY *issuer_key, bool ca) {
  static long serial = 1;
  X509 *x = X509_new();
  if (x == NULL)
    return NULL;
  X509_NAME *name = X509_get_subject_name(x);
  bool ok =
      X509_set_version(x, 2) == 1 &&
      ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) == 1 &&
      X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
      X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL &&
      X509_set_pubkey(x, key) == 1 &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 (const unsigned char *)cn, -1, -1, 0) == 1 &&
      X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer)
                                             : name) == 1 &&
      add_extension(x, issuer, NID_basic_constraints,
                    ca ? "critical,CA:TRUE" : "CA:FALSE") &&
      (ca || add_extension(x, issuer, NID_subject_alt_name,
                           "DNS:localhost,IP:127.0.0.1")) &&
      X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

bool usc_testcert_write_key(const char *path, EVP_PKEY *key, bool encrypt) {
  static unsigned char password[] = "secret";
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return false;
  bool ok = PEM_write_PrivateKey(f, key, encrypt ? EVP_aes_128_cbc() : NULL,
                                 encrypt ? password : NULL,
                                 encrypt ? (int)sizeof(password) - 1 : 0, NULL,
                                 NULL) == 1;
  return fclose(f) == 0 && ok;
}

bool usc_testcert_write_cert(const char *path, X509 *cert) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return false;
  bool ok = PEM_write_X509(f, cert) == 1;
  return fclose(f) == 0 && ok;
}

bool usc_testcert_write_server(const char *cert_path, const char *key_path) {
  EVP_PKEY *key = usc_testcert_key();
  X509 *cert = key != NULL
                   ? usc_testcert_make(key, "localhost", NULL, NULL, false)
                   : NULL;
  bool ok = cert != NULL && usc_testcert_write_cert(cert_path, cert) &&
            usc_testcert_write_key(key_path, key, false);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ok;
}
