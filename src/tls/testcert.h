/* Test certificates, made with the OpenSSL API when a test starts (no key
 * is committed): P-256 keys, certificates valid from an hour ago for a
 * day, leaf certificates for localhost and 127.0.0.1. For tests only. */
#ifndef USC_TLS_TESTCERT_H
#define USC_TLS_TESTCERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

/* A new P-256 key, or NULL. Free with EVP_PKEY_free. */
EVP_PKEY *usc_testcert_key(void);

/* A certificate for `key` named `cn`: a CA (basicConstraints CA:TRUE) or a
 * leaf (subjectAltName DNS:localhost, IP:127.0.0.1), signed by `issuer`
 * with `issuer_key`, or self-signed when they are NULL. NULL on failure.
 * Free with X509_free. */
X509 *usc_testcert_make(EVP_PKEY *key, const char *cn, X509 *issuer,
                        EVP_PKEY *issuer_key, bool ca);

/* PEM files; the key encrypted with the password "secret" when `encrypt`.
 * Return whether the file was written. */
bool usc_testcert_write_key(const char *path, EVP_PKEY *key, bool encrypt);
bool usc_testcert_write_cert(const char *path, X509 *cert);

/* A self-signed leaf and its key written to `cert_path` and `key_path`.
 * Returns whether both were written. */
bool usc_testcert_write_server(const char *cert_path, const char *key_path);

#endif
