"""Reading and judging a campaign's results: records, statistics, leaderboard, audit, diversity."""
