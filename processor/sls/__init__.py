"""The SLS side: pages of log groups with the cursor to resume from (`source`), a logstore's shards and cursors
(`shards`), the deadline-bound retry policy every SLS call uses (`retry`) and the endpoint's checks (`endpoint`)."""
