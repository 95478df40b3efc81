#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn scan(content_type: Option<&str>, chunks: &[&[u8]]) -> Option<(Option<u64>, Option<u64>)> {
    let mut scanner = UsageScanner::for_content_type(content_type);
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.finish()
}

const STREAM: &str = concat!(
    "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":34,\"total_tokens\":154}}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn finds_the_usage_chunk_of_a_stream_however_it_is_split() {
    let bytes = STREAM.as_bytes();
    let ct = Some("text/event-stream; charset=utf-8");
    assert_eq!(scan(ct, &[bytes]), Some((Some(120), Some(34))));
    // Every split point, including inside the usage line and inside "\r\n".
    for cut in 0..bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(scan(ct, &[a, b]), Some((Some(120), Some(34))), "cut {cut}");
    }
    let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(scan(ct, &one_by_one), Some((Some(120), Some(34))));
    let crlf = STREAM.replace('\n', "\r\n");
    assert_eq!(scan(ct, &[crlf.as_bytes()]), Some((Some(120), Some(34))));
}

#[test]
fn a_stream_without_usage_or_with_an_unterminated_last_line() {
    let ct = Some("text/event-stream");
    assert_eq!(
        scan(ct, &[b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n"]),
        None
    );
    assert_eq!(
        scan(
            ct,
            &[b"data: {\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}"]
        ),
        Some((Some(5), Some(6)))
    );
    // An enormous line is skipped, and what follows it is still read.
    let long = format!("data: {}\n", "x".repeat(MAX_SSE_LINE + 10));
    let usage = b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n";
    assert_eq!(
        scan(ct, &[long.as_bytes(), usage]),
        Some((Some(1), Some(2)))
    );
}

#[test]
fn reads_the_usage_of_a_plain_json_answer() {
    let body = br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#;
    let (a, b) = body.split_at(20);
    assert_eq!(
        scan(Some("application/json"), &[a, b]),
        Some((Some(9), Some(4)))
    );
    assert_eq!(scan(None, &[body]), Some((Some(9), Some(4))));
    assert_eq!(scan(Some("application/json"), &[b"{\"usage\":null}"]), None);
    assert_eq!(scan(Some("text/plain"), &[b"slow down"]), None);
}

#[test]
fn the_request_model_comes_from_the_body() {
    assert_eq!(
        request_model(br#"{"messages":[],"model":"qwen","stream":true}"#).as_deref(),
        Some("qwen")
    );
    assert_eq!(request_model(b""), None);
    assert_eq!(request_model(b"[1]"), None);
}
