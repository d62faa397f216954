-- Devices may be authenticated by source address instead of (or besides) digest credentials.
ALTER TABLE devices ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
