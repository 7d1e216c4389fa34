package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// lastUsedGranularity is how stale a token's last_used_at may get before
// TokenByHash writes it again: every API request looks its token up, and a
// write per request would cost more than the request.
const lastUsedGranularity = time.Minute

const tokenColumns = "id, name, role, created_at, last_used_at, revoked_at"

func scanToken(row interface{ Scan(...any) error }) (ota.Token, error) {
	var tok ota.Token
	var lastUsed, revoked sql.NullTime
	if err := row.Scan(&tok.ID, &tok.Name, &tok.Role, &tok.CreatedAt, &lastUsed, &revoked); err != nil {
		return ota.Token{}, err
	}
	tok.CreatedAt = tok.CreatedAt.UTC()
	tok.LastUsedAt, tok.RevokedAt = timePtr(lastUsed), timePtr(revoked)
	return tok, nil
}

// CreateToken stores tok under the hash of its secret and assigns tok.ID
// and tok.CreatedAt.
func (s *sqlStore) CreateToken(ctx context.Context, tok *ota.Token, hash []byte) error {
	switch {
	case tok.Name == "":
		return invalid("a token needs a name")
	case !tok.Role.Valid():
		return invalid("unknown role %q: use viewer, operator or admin", tok.Role)
	case len(hash) == 0:
		return invalid("a token needs the hash of its secret")
	}
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	var holder int64
	err = t.QueryRowContext(ctx, `SELECT id FROM tokens WHERE lower(name) = lower($1)`, tok.Name).Scan(&holder)
	if err == nil {
		return conflict("a token named %q exists already (token %d; names are unique, revoked tokens' included, so that events name one token)", tok.Name, holder)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("create token: %w", err)
	}
	var id int64
	err = t.QueryRowContext(ctx, `INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4)
		RETURNING id`, tok.Name, string(tok.Role), hash, t.now).Scan(&id)
	if isUniqueViolation(err) {
		// A racing insert of the same name, or the same secret.
		return conflict("a token with this name or secret exists already")
	} else if err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	if err := t.addEvent(ctx, tokenEvent("created", id, tok.Name, tok.Role)); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return err
	}
	tok.ID, tok.CreatedAt, tok.LastUsedAt, tok.RevokedAt = id, t.now, nil, nil
	return nil
}

func tokenEvent(action string, id int64, name string, role ota.Role) ota.Event {
	return ota.Event{Kind: ota.KindToken, Action: action,
		Data: map[string]string{"id": strconv.FormatInt(id, 10), "name": name, "role": string(role)}}
}

// TokenByHash finds an unrevoked token by the hash of its secret and notes
// that it was used.
func (s *sqlStore) TokenByHash(ctx context.Context, hash []byte) (ota.Token, error) {
	tok, err := scanToken(s.db.QueryRowContext(ctx,
		`SELECT `+tokenColumns+` FROM tokens WHERE hash = $1 AND revoked_at IS NULL`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return ota.Token{}, notFound("unknown or revoked token")
	} else if err != nil {
		return ota.Token{}, fmt.Errorf("find token: %w", err)
	}
	now := s.now()
	if tok.LastUsedAt == nil || now.Sub(*tok.LastUsedAt) >= lastUsedGranularity {
		// A failure here must not refuse a valid token: the time is a hint.
		if err := s.touchToken(ctx, tok.ID, now); err != nil {
			s.logger.Warn("cannot record token use", "token", tok.ID, "err", err)
		} else {
			tok.LastUsedAt = &now
		}
	}
	return tok, nil
}

// touchToken sets last_used_at unless another request just did.
func (s *sqlStore) touchToken(ctx context.Context, id int64, now time.Time) error {
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	_, err = t.ExecContext(ctx, `UPDATE tokens SET last_used_at = $1
		WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)`, now, id, now.Add(-lastUsedGranularity))
	if err != nil {
		return err
	}
	return t.Commit()
}

// ListTokens pages through all tokens, revoked ones included, in id order.
func (s *sqlStore) ListTokens(ctx context.Context, page Page) ([]ota.Token, string, error) {
	limit, err := pageLimit(page)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeIDCursor(page.After)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id > $1 ORDER BY id LIMIT $2`,
		after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	tokens := []ota.Token{}
	for rows.Next() {
		tok, err := scanToken(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list tokens: %w", err)
		}
		tokens = append(tokens, tok)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list tokens: %w", err)
	}
	tokens, next := cutPage(tokens, limit, func(t ota.Token) string { return idKey(t.ID) })
	return tokens, next, nil
}

// RevokeToken revokes a token; revoking it again answers ECONFLICT.
func (s *sqlStore) RevokeToken(ctx context.Context, id int64) error {
	t, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	tok, err := scanToken(t.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("token %d does not exist", id)
	} else if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	if tok.RevokedAt != nil {
		return conflict("token %d (%s) was revoked already, at %s", id, tok.Name, tok.RevokedAt.Format(time.RFC3339))
	}
	// The condition, not the read above, decides between racing revokes.
	res, err := t.ExecContext(ctx, `UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, t.now, id)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return conflict("token %d (%s) was revoked already", id, tok.Name)
	}
	if err := t.addEvent(ctx, tokenEvent("revoked", id, tok.Name, tok.Role)); err != nil {
		return err
	}
	return t.Commit()
}

// CountTokens counts the unrevoked tokens.
func (s *sqlStore) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}
