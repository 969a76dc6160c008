//! alternator-sim: a stand-in Alternator cluster for tests and the demo. Not a database.
