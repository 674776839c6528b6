"""Reading and judging a campaign's results: records, statistics, audit, rerun, diversity."""
