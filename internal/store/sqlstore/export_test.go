package sqlstore

// MismatchCandidatesSQL is s's MismatchCandidates query, for the plan
// tests.
func MismatchCandidatesSQL(s *Store) string { return s.mismatchCandidatesSQL() }

// OldMismatchCandidatesSQL is the query MismatchCandidates ran before it
// was split in two (one join over the whole cache), which the tests
// compare it with and the benchmark measures against.
var OldMismatchCandidatesSQL = `SELECT ` + prefixed("c.", certColumns) + ` FROM vault_certs v JOIN certificates c ON c.serial = v.serial
	WHERE v.serial > ? AND v.kind <> 'ca' AND v.revoked <> (c.revoked_at IS NOT NULL) ORDER BY v.serial LIMIT ?`

// VaultCertStatesSQL is the merge's cache query, for the plan test.
const VaultCertStatesSQL = vaultCertStatesSQL
