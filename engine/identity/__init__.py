"""Who a mail is from, as far as mailgate can tell: reply tokens and unambiguous senders."""
