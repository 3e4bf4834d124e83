//! Store integration tests, one binary.
//!
//! The contract suite (`contract.rs`) runs unchanged against SQLite (`sqlite_*`, a temp file per
//! test) and MongoDB (`mongo_*`, a fresh database per test on the peer named by
//! `DRIFTGUARD_TEST_MONGODB_URI`; without it the mongo tests fail and say how to start it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod fixtures;
mod support;

mod buffer;
mod bulk;
mod failures;
mod kill9;
mod leadership;
mod mongo_only;
mod outbox;
mod runs;
mod sqlite_only;

use support::Harness;

/// `contract!(behaviour => sqlite_test, mongo_test)` runs one behaviour of `contract.rs` on
/// both backends; `contract!(in module; ...)` one of another module.
macro_rules! contract {
    (in $module:ident; $($behaviour:ident => $sqlite:ident, $mongo:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let h = Harness::sqlite().await;
            $module::$behaviour(&h).await;
            h.cleanup().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $mongo() {
            let h = Harness::mongo().await;
            $module::$behaviour(&h).await;
            h.cleanup().await;
        }
    )*};
    ($($behaviour:ident => $sqlite:ident, $mongo:ident;)*) => {
        contract! { in contract; $($behaviour => $sqlite, $mongo;)* }
    };
}

contract! {
    installation_key_is_generated_once => sqlite_installation_key_is_generated_once, mongo_installation_key_is_generated_once;
    empty_store_answers_empty => sqlite_empty_store_answers_empty, mongo_empty_store_answers_empty;
    every_filter_selects_exactly => sqlite_every_filter_selects_exactly, mongo_every_filter_selects_exactly;
    paging_honours_limit_offset_and_total => sqlite_paging_honours_limit_offset_and_total, mongo_paging_honours_limit_offset_and_total;
    statistics_count_every_figure => sqlite_statistics_count_every_figure, mongo_statistics_count_every_figure;
    lifecycle_end_to_end => sqlite_lifecycle_end_to_end, mongo_lifecycle_end_to_end;
    reapplying_a_batch_is_idempotent => sqlite_reapplying_a_batch_is_idempotent, mongo_reapplying_a_batch_is_idempotent;
    restart_keeps_the_same_episode => sqlite_restart_keeps_the_same_episode, mongo_restart_keeps_the_same_episode;
    secret_canary_never_stored => sqlite_secret_canary_never_stored, mongo_secret_canary_never_stored;
    odd_keys_round_trip => sqlite_odd_keys_round_trip, mongo_odd_keys_round_trip;
    one_analysis_batch_of_many_resources => sqlite_one_analysis_batch_of_many_resources, mongo_one_analysis_batch_of_many_resources;
    oversized_record_is_stored_cut_not_dropped => sqlite_oversized_record_is_stored_cut_not_dropped, mongo_oversized_record_is_stored_cut_not_dropped;
    keyset_paging_after_a_resource_id => sqlite_keyset_paging_after_a_resource_id, mongo_keyset_paging_after_a_resource_id;
    outbox_pending_is_oldest_first => sqlite_outbox_pending_is_oldest_first, mongo_outbox_pending_is_oldest_first;
    outbox_push_keeps_the_first_of_a_duplicate => sqlite_outbox_push_keeps_the_first_of_a_duplicate, mongo_outbox_push_keeps_the_first_of_a_duplicate;
    outbox_remove_only_the_named_sinks_keys => sqlite_outbox_remove_only_the_named_sinks_keys, mongo_outbox_remove_only_the_named_sinks_keys;
    outbox_survives_a_restart => sqlite_outbox_survives_a_restart, mongo_outbox_survives_a_restart;
    outbox_large_payload_and_odd_keys_round_trip => sqlite_outbox_large_payload_and_odd_keys_round_trip, mongo_outbox_large_payload_and_odd_keys_round_trip;
    outbox_takes_a_thousand_entries_in_one_call => sqlite_outbox_takes_a_thousand_entries_in_one_call, mongo_outbox_takes_a_thousand_entries_in_one_call;
}

contract! { in leadership;
    a_newer_claim_fences_the_old_writer => sqlite_a_newer_claim_fences_the_old_writer, mongo_a_newer_claim_fences_the_old_writer;
    claims_never_lower_the_term => sqlite_claims_never_lower_the_term, mongo_claims_never_lower_the_term;
    an_unclaimed_handle_writes_unfenced => sqlite_an_unclaimed_handle_writes_unfenced, mongo_an_unclaimed_handle_writes_unfenced;
    a_stale_leaders_buffered_writes_are_dropped => sqlite_a_stale_leaders_buffered_writes_are_dropped, mongo_a_stale_leaders_buffered_writes_are_dropped;
    a_fenced_direct_write_fences_the_buffer => sqlite_a_fenced_direct_write_fences_the_buffer, mongo_a_fenced_direct_write_fences_the_buffer;
}

contract! { in runs;
    run_requests_are_taken_oldest_first_once => sqlite_run_requests_are_taken_oldest_first_once, mongo_run_requests_are_taken_oldest_first_once;
    run_states_replace_and_round_trip => sqlite_run_states_replace_and_round_trip, mongo_run_states_replace_and_round_trip;
    run_states_keep_the_newest_thousand => sqlite_run_states_keep_the_newest_thousand, mongo_run_states_keep_the_newest_thousand;
}

contract! { in bulk;
    several_writes_of_one_resource_in_one_batch => sqlite_several_writes_of_one_resource_in_one_batch, mongo_several_writes_of_one_resource_in_one_batch;
}
