-- +goose Up
-- A product may let its devices speak EnOS's device protocol as well as
-- otter's. EnOS's login signs with the device secret itself, so for the
-- devices of such a product the secret is kept sealed (AES-256-GCM under a
-- key derived from the server's signing key, bound to the device) beside
-- its hash; devices of other products keep the hash only.
ALTER TABLE products ADD COLUMN protocol TEXT NOT NULL DEFAULT 'otter';
ALTER TABLE devices ADD COLUMN secret_sealed BLOB;

-- +goose Down
ALTER TABLE devices DROP COLUMN secret_sealed;
ALTER TABLE products DROP COLUMN protocol;
