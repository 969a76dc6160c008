//! Discovery agent: finds, vets and publishes the live Alternator nodes.
