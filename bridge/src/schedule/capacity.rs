//! Per puppetserver: the admissible rate of new runs.
