"""The WhatsApp transport: Meta Cloud API or Twilio webhooks in, their REST APIs out."""
