//! One mail transaction (MAIL, RCPT for each recipient, DATA, the message)
//! and what became of each recipient.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{ClientError, Response, SmtpClient, Stage};

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The reverse path (empty for a bounce).
    pub mail_from: &'a str,
    /// The forward paths.
    pub recipients: &'a [String],
    /// The message, not yet dot-stuffed.
    pub message: &'a [u8],
    /// `MAIL` parameters, e.g. `BODY=8BITMIME`, `SMTPUTF8`.
    pub parameters: &'a [&'a str],
}

impl<'a> Envelope<'a> {
    /// The envelope without its message.
    pub fn route(&self) -> Route<'a> {
        Route {
            mail_from: self.mail_from,
            recipients: self.recipients,
            parameters: self.parameters,
        }
    }
}

/// Where a message goes, when the message itself is read as it is sent
/// ([`SmtpClient::send_mail_from`]).
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// The reverse path (empty for a bounce).
    pub mail_from: &'a str,
    /// The forward paths.
    pub recipients: &'a [String],
    /// `MAIL` parameters, e.g. `BODY=8BITMIME`, `SMTPUTF8`.
    pub parameters: &'a [&'a str],
}

/// The message of a transaction: in memory, or read as it is sent.
enum Message<'a, R> {
    Bytes(&'a [u8]),
    Stream(R),
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The server took the message for it; the reply to the final dot.
    Accepted(Response),
    /// The server refused it, at `stage`, with `reply`.
    Refused {
        /// The step that was refused.
        stage: Stage,
        /// The refusal.
        reply: Response,
    },
}

/// The replies of one transaction.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// The reply to MAIL FROM.
    pub mail: Response,
    /// The reply to each RCPT TO, in order; fewer than the recipients when
    /// MAIL was refused and the client stopped.
    pub rcpts: Vec<Response>,
    /// The reply to DATA, when sent.
    pub data: Option<Response>,
    /// The reply to the message's final dot, when sent.
    pub end: Option<Response>,
}

impl Transaction {
    /// One outcome per recipient of `count`.
    pub fn outcomes(&self, count: usize) -> Vec<RecipientOutcome> {
        let refused = |stage, reply: &Response| RecipientOutcome::Refused {
            stage,
            reply: reply.clone(),
        };
        if !self.mail.is_positive() {
            return vec![refused(Stage::MailFrom, &self.mail); count];
        }
        (0..count)
            .map(|i| match (self.rcpts.get(i), &self.data, &self.end) {
                (Some(rcpt), _, _) if !rcpt.is_positive() => refused(Stage::RcptTo, rcpt),
                (None, _, _) => refused(Stage::MailFrom, &self.mail),
                (Some(_), Some(data), _) if data.code != 354 => refused(Stage::Data, data),
                (Some(_), _, Some(end)) if end.is_positive() => {
                    RecipientOutcome::Accepted(end.clone())
                }
                (Some(_), _, Some(end)) => refused(Stage::EndOfData, end),
                (Some(rcpt), _, None) => refused(Stage::Data, self.data.as_ref().unwrap_or(rcpt)),
            })
            .collect()
    }

    /// Whether the server may still hold transaction state (anything but a
    /// completed message), so the next transaction must start with RSET.
    pub fn needs_reset(&self) -> bool {
        !self.end.as_ref().is_some_and(Response::is_positive)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Runs one transaction. With `pipelining` (RFC 2920) MAIL, every RCPT
    /// and DATA go in one write; otherwise one at a time, stopping after a
    /// refused MAIL. The message is sent only when a recipient was accepted
    /// and DATA got `354`; a server that says `354` with no recipient gets an
    /// empty message, so the session stays in step.
    pub async fn send_mail(
        &mut self,
        envelope: Envelope<'_>,
        pipelining: bool,
    ) -> Result<Transaction, ClientError> {
        let message: Message<'_, &[u8]> = Message::Bytes(envelope.message);
        self.transact(envelope.route(), message, pipelining).await
    }

    /// [`send_mail`](Self::send_mail) with the message read from `message`
    /// a chunk at a time as it is sent ([`send_message_from`](Self::send_message_from)).
    pub async fn send_mail_from<R: AsyncRead + Unpin>(
        &mut self,
        route: Route<'_>,
        message: R,
        pipelining: bool,
    ) -> Result<Transaction, ClientError> {
        self.transact(route, Message::Stream(message), pipelining)
            .await
    }

    async fn transact<R: AsyncRead + Unpin>(
        &mut self,
        envelope: Route<'_>,
        message: Message<'_, R>,
        pipelining: bool,
    ) -> Result<Transaction, ClientError> {
        let mut mail = format!("MAIL FROM:<{}>", envelope.mail_from);
        for parameter in envelope.parameters {
            mail.push(' ');
            mail.push_str(parameter);
        }
        let mut commands = vec![mail];
        commands.extend(envelope.recipients.iter().map(|r| format!("RCPT TO:<{r}>")));
        let (mut replies, mut data) = if pipelining {
            commands.push("DATA".into());
            let mut replies = self.pipeline(&commands).await?;
            let data = replies.pop();
            (replies, data)
        } else {
            let mut replies = Vec::with_capacity(commands.len());
            for command in &commands {
                let reply = self.command(command).await?;
                let stop = replies.is_empty() && !reply.is_positive();
                replies.push(reply);
                if stop {
                    break;
                }
            }
            (replies, None)
        };
        let mail = replies.remove(0);
        let accepted = mail.is_positive() && replies.iter().any(Response::is_positive);
        if accepted && data.is_none() {
            data = Some(self.command("DATA").await?);
        }
        let end = match (&data, message) {
            (Some(reply), _) if reply.code == 354 && !accepted => {
                Some(self.send_message(b"").await?)
            }
            (Some(reply), Message::Bytes(bytes)) if reply.code == 354 => {
                Some(self.send_message(bytes).await?)
            }
            (Some(reply), Message::Stream(stream)) if reply.code == 354 => {
                Some(self.send_message_from(stream).await?)
            }
            _ => None,
        };
        Ok(Transaction {
            mail,
            rcpts: replies,
            data,
            end,
        })
    }
}
