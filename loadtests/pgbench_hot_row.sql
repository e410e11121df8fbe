-- pgbench reference of the booking benchmark: every client updates the same row, the purest
-- form of the hot-seat race (row lock, WAL, commit). Table: bench_hot_row (id int, n bigint).
UPDATE bench_hot_row SET n = n + 1 WHERE id = 1;
