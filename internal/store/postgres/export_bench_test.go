package postgres

// DiscoverySQLForBench is the claim's candidate query on PostgreSQL
// (without the row locks): the steps of task $1 ready at $2, at most $3.
func DiscoverySQLForBench() string {
	q, err := loadQueries()
	if err != nil {
		panic(err)
	}
	return q["ReadyStepIDs"]
}
