/* access: who may use PhoneCallService. A table maps bearer tokens to a
 * grant: one user and the extensions of that user the token may act for
 * (or all of them); and a request's address is resolved against a grant.
 * Pure: no I/O, no clock, no globals.
 *
 * The tokens file (--tokens-file), one grant a line:
 *
 *   # a comment; blank lines are ignored
 *   TOKEN  USER  EXTENSIONS   # a comment may follow
 *
 * fields separated by spaces or tabs (CRLF line ends are fine), where
 *   TOKEN       16 to 4096 visible ASCII characters ('!' to '~'), not
 *               starting with '#'; each token once in the file;
 *   USER        the user id: 1 to 64 letters and digits;
 *   EXTENSIONS  '*' (every extension of the user), or a comma-separated
 *               list without spaces of extension numbers (1 to 32 digits
 *               and '*', at least one digit), each once; compared
 *               literally, so list both forms ("0003*210,210") if clients
 *               use both.
 * One user may have several tokens, each with its own extensions.
 *
 * Secrets. Tokens are kept only as SHA-256 digests; a lookup hashes the
 * token it is given and compares digests in constant time. No message of
 * this module quotes a token. */
#ifndef USC_ACCESS_H
#define USC_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#define USC_ACCESS_TOKEN_MIN 16
#define USC_ACCESS_TOKEN_MAX 4096
#define USC_ACCESS_MAX_EXTENSIONS 256 /* in one line */

typedef struct usc_access usc_access_t;

/* What a token may do. Every pointer belongs to the table and lives as
 * long as it does. */
typedef struct {
  const char *user;
  bool all_extensions;
  const char *const *extensions; /* when not all_extensions; file order */
  size_t n_extensions;
} usc_access_grant_t;

/* Parses a tokens file's contents (`len` bytes; NUL bytes are refused).
 * Returns 0 with *out, a table holding one reference; or USC_ERR_INVALID
 * with a sentence naming the first bad line in `error` ("line 3: user id
 * 'a.b' is invalid: use 1 to 64 letters and digits"), or USC_ERR_NOMEM.
 * A text without any grant is refused too: it is more likely a file
 * caught while being written, or a mount gone wrong, than a wish to lock
 * every client out. */
int usc_access_parse(const char *text, size_t len, usc_access_t **out,
                     char *error, size_t error_cap);

/* References: whoever holds a grant holds a reference to its table.
 * usc_access_ref returns `table`; usc_access_unref frees the table when
 * the last reference goes, and accepts NULL. */
usc_access_t *usc_access_ref(usc_access_t *table);
void usc_access_unref(usc_access_t *table);

size_t usc_access_count(const usc_access_t *table); /* tokens */

/* The grant of the token in an `authorization` value "Bearer <token>"
 * (the scheme in any case, then spaces, then the token, then nothing but
 * spaces); NULL for NULL, another scheme, or a token not in the table. */
const usc_access_grant_t *usc_access_lookup(const usc_access_t *table,
                                            const char *authorization);

/* Whether two grants allow the same: user, and extensions in the same
 * order. */
bool usc_access_grant_equal(const usc_access_grant_t *a,
                            const usc_access_grant_t *b);

/* What a request's extension may stand for. */
typedef enum {
  /* "@self" means every extension of the user (List, Get, Hangup, the
   * actions). */
  USC_ACCESS_SELF,
  /* "@self" and "" both mean every extension (Watch). */
  USC_ACCESS_SELF_OR_BLANK,
  /* An extension number is needed (the creates): "@self" is left for the
   * request's validation to refuse. */
  USC_ACCESS_NUMBER,
} usc_access_wildcard_t;

typedef enum {
  /* Serve the request with *user and *extension. */
  USC_ACCESS_ALLOWED,
  /* Another user's, or an extension the token does not hold: answer as if
   * nothing were there (NOT_FOUND). */
  USC_ACCESS_HIDDEN,
  /* "@self" (or a blank read as it) where the token holds several, but not
   * all, extensions: the request must name one. */
  USC_ACCESS_AMBIGUOUS,
} usc_access_verdict_t;

/* Resolves a request's `user_id` and `extension` (NULL reads "") against
 * `grant`:
 *  - user: "", "@me", "@viewer", "@owner" and the grant's user id give the
 *    grant's user id; another id of 1 to 64 letters and digits is HIDDEN;
 *    a malformed one is left as it is, for the request's validation.
 *  - extension, when the grant holds every extension: left as it is.
 *    Else one of the grant's extensions is left as it is; "@self" (and ""
 *    under USC_ACCESS_SELF_OR_BLANK) becomes the grant's one extension, or
 *    is AMBIGUOUS when it holds several; another extension number is
 *    HIDDEN; anything else is left as it is.
 * A user that is HIDDEN wins over an AMBIGUOUS extension. *user and
 * *extension are set on ALLOWED only; they point into the request or the
 * grant. */
usc_access_verdict_t
usc_access_resolve(const usc_access_grant_t *grant, const char *user_id,
                   const char *extension, usc_access_wildcard_t wildcard,
                   const char **user, const char **extension_out);

#endif
