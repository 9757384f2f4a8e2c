//! Encoding in streams (`rosetta_model::streams`): the same embeddings, in the same order, as
//! one stream, and libtorch's thread count put back afterwards. A test binary of its own:
//! streams set the process-wide thread count while they run.

mod common;

#[test]
fn streams_give_one_streams_embeddings_in_order_and_put_the_thread_count_back() {
    let dir = tempfile::tempdir().unwrap();
    // 70 texts of 1 to 40 words, in an order unlike their lengths: batches of very different
    // cost, so the streams finish them out of order.
    let texts: Vec<String> = (0..70)
        .map(|i| {
            (0..1 + (i * 17) % 40).map(|w| format!("word{} river{}", (i + w) % 9, w % 5)).collect::<Vec<_>>().join(" ")
        })
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let model = common::tiny_encoder(dir.path(), &texts, 120, 48);
    tch::set_num_threads(1);
    let one_thread = model.encode_by_length_cached(&texts, "", 4, 16, None, 1).unwrap();
    tch::set_num_threads(3);
    let plain = model.encode(&texts, "", 4).unwrap();
    for streams in [2, 3, 8] {
        let streamed = model.encode_by_length_cached(&texts, "", 4, 16, None, streams).unwrap();
        assert_eq!(tch::get_num_threads(), 3, "the thread count is put back after {streams} streams");
        // Every batch ran on one thread, as with a one-thread process: the same bits.
        assert!(streamed.equal(&one_thread), "{streams} streams");
        let diff = (&streamed - &plain).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{streams} streams vs batches in text order: {diff}");
    }
}
