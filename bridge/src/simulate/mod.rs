//! `pvc-bridge simulate`: the scheduler in virtual time against modelled
//! puppetservers, beside Puppet's own scheduling strategies.
