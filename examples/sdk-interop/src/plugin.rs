//! The SDK side: a root context holding the configuration and, per request,
//! an `HttpContext` that sends the count through webdis and decides at the
//! answer.

use crate::count::{self, Config};
use kit::limits::window::Decision;
use kit::resp::CommandBuf;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { config: None }));
}}

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                let _ = proxy_wasm::hostcalls::log(LogLevel::Error, &format!("sdk-interop: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Counted {
            config: Rc::clone(self.config.as_ref()?),
            cmd: CommandBuf::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Counted {
    config: Rc<Config>,
    cmd: CommandBuf,
}

impl HttpContext for Counted {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(client) = self.get_http_request_header_bytes(&self.config.header) else {
            return Action::Continue;
        };
        if !self.config.counts(&client) {
            return Action::Continue;
        }
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        count::command(&mut self.cmd, &client, now);
        let Ok(path) = core::str::from_utf8(self.cmd.bytes()) else {
            return Action::Continue;
        };
        let headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", "webdis"),
        ];
        match self.dispatch_http_call(
            &self.config.webdis_cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(500),
        ) {
            Ok(_) => Action::Pause,
            Err(_) => Action::Continue,
        }
    }
}

impl Context for Counted {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let answer = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        match count::verdict(&answer, self.config.per_minute) {
            Some(Decision::Reject) => {
                self.send_http_response(429, vec![], Some(b"too many requests\n"));
            }
            Some(Decision::Allow { remaining }) => {
                let mut text = itoa::Buffer::new();
                self.set_http_request_header(
                    "x-sdk-interop-remaining",
                    Some(text.format(remaining)),
                );
                self.resume_http_request();
            }
            None => self.resume_http_request(),
        }
    }
}
