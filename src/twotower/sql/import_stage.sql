-- Staging tables for an import; dropped at commit. `_row` is the source row, for error messages.
CREATE TEMP TABLE stage_profiles (_row bigint, user_id text, display_name text, created_at timestamptz,
    age_range text, region text) ON COMMIT DROP;
CREATE TEMP TABLE stage_videos (_row bigint, id text, title text, description text, genre text, maker text,
    price double precision, duration_seconds integer, product_released_at timestamptz,
    distribution_started_at timestamptz, published_at timestamptz, created_at timestamptz) ON COMMIT DROP;
CREATE TEMP TABLE stage_tags (_row bigint, video_id text, tag_name text, created_at timestamptz) ON COMMIT DROP;
CREATE TEMP TABLE stage_performers (_row bigint, video_id text, performer_name text,
    created_at timestamptz) ON COMMIT DROP;
CREATE TEMP TABLE stage_decisions (_row bigint, user_id text, video_id text, decision_type text,
    created_at timestamptz) ON COMMIT DROP;
